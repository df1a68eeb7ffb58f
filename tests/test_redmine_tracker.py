"""The Redmine tracker's text: what an issue's description holds, and how a later edit
or `anonim` on LAPOR! rewrites it (no Redmine needed)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from connector.tracker.redmine import describe, marker, redescribe
from tests.test_tracker_contract import REPORTER, ticket


def test_description_holds_the_facts_and_the_reporter_only_when_not_anonim() -> None:
    t = ticket("4100001")
    text = describe(t)
    # Shown as typed (Redmine escapes a <pre>'s content): only an invisible space after a
    # "<" that could start a tag (tests/test_redmine_render.py renders it).
    assert "<pre>\nJalan <\u200bb>rusak<\u200b/b> *parah*.\n</pre>" in text
    assert "Kategori: Infrastruktur" in text and "Kanal: web" in text
    assert "Lokasi: Ujoh Bilang" in text and REPORTER["phone"] in text
    assert text.endswith(marker("4100001"))
    anon = describe(replace(t, anonymous=True))
    assert all(v not in anon for v in REPORTER.values())


def test_later_anonim_and_edited_text_rewrite_the_description() -> None:
    t = ticket("4100002")
    before = describe(t)
    after = redescribe(before, "Teks baru dari admin.", True)
    assert "Teks baru dari admin." in after and "rusak" not in after
    assert all(v not in after for v in REPORTER.values())
    assert "Kanal: web" in after and after.endswith(marker("4100002"))
    assert redescribe(before, None, False) == before


@given(st.text(min_size=3, max_size=40))
def test_the_reporter_never_survives_anonim_whatever_the_text(body: str) -> None:
    t = ticket("4100003", body=f"Saya {REPORTER['name']} mengadu: {body}")
    after = redescribe(describe(t), None, True)
    for value in REPORTER.values():
        assert value not in after


HOSTILE = [
    "!http://evil.example/x.png!",
    '"klik":http://evil.example',
    "{{include(Rahasia)}}",
    "[[Wiki]] #1 @admin",
    "baris\nh1. Judul palsu",
    "*tebal* _miring_ %{color:red}merah% |sel|",
    "http://evil.example",
]


def test_every_lapor_field_in_the_description_is_inert_textile() -> None:
    """Issue 23 item 7 (checked here on the text; the rendering is Redmine's): category,
    location, channel and reporter fields carry no markup that Redmine would render."""
    import re

    for value in HOSTILE:
        t = ticket(
            "4100004",
            category=value,
            channel=value,
            location={"village": value, "district": value},
            reporter={"name": value, "email": value, "phone": value},
        )
        text = describe(t)
        facts = text.split("</pre>", 1)[1]
        bare = re.sub(
            r"&#\d+;", "", facts.replace(marker("4100004"), "").replace("Diterima di LAPOR!:", "")
        )
        assert not re.search(r'[!{}\[\]"#*_@%|^~=<>]', bare), value
        assert "http://" not in facts and "\nh1." not in facts
        benign = describe(ticket("4100004")).split("</pre>", 1)[1]
        assert facts.count("\n") == benign.count("\n")  # one line per fact, none injected


def test_escaped_reporter_fields_are_still_removed_on_anonim() -> None:
    reporter = {"name": "Budi_Santoso", "email": "budi@example.org", "phone": "081234567890"}
    t = ticket("4100005", reporter=reporter, body="Saya Budi_Santoso, budi@example.org, mengadu.")
    after = redescribe(describe(t), None, True)
    for v in reporter.values():
        assert v not in after
        assert "".join(f"&#{ord(c)};" if c in "_@" else c for c in v) not in after
