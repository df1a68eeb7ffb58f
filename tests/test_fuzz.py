"""Fuzzing what the outside world can reach: never a traceback, always a clear error."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.errors import ConfigError, InvalidRecord
from connector.lapor import models as m
from connector.lapor import wire
from connector.mappings import MappingError, load
from connector.settings import load_config
from tests.conftest import ROOT
from tests.factories import good_record

ZERO_DATES = st.sampled_from(
    ["0001-01-01 00:00:00", "0000-00-00 00:00:00", "9999-12-31 23:59:59", "0001-01-01 06:59:59"]
)
# Text as dirty as LAPOR!'s: NUL bytes, lone UTF-16 surrogates, control characters.
dirty_text = st.text(st.characters(codec=None, blacklist_categories=()), max_size=30) | st.builds(
    lambda a, b, c: a + b + c,
    st.text(max_size=8),
    st.sampled_from(["\x00", "\ud800", "\udfff", "\x1b[2J", "\u202e", "\x07"]),
    st.text(max_size=8),
)


def nested(depth: int) -> Any:
    value: Any = "x"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


deep_values = st.integers(30, 3000).map(nested)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | st.text(max_size=30)
    | dirty_text
    | ZERO_DATES,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=6)
    ),
    max_leaves=25,
)
# Records shaped like LAPOR!'s, with fields randomly wrong, missing or extra.
field_values = {
    "tracking_id": st.one_of(st.integers(-5, 10**12), st.text(max_size=8), st.none()),
    "judul": st.one_of(st.text(max_size=20), st.integers()),
    "status": st.one_of(st.sampled_from(m.LAPOR_STATUSES), st.text(max_size=10)),
    "diperbarui": st.one_of(
        st.just("2026-11-27 10:00:00"), st.text(max_size=22), st.integers(), ZERO_DATES
    ),
    "unit_ids": st.one_of(st.lists(st.integers(), max_size=3), st.text(max_size=5)),
}


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(json_values, deep_values, st.fixed_dictionaries({}, optional=field_values)))
def test_feed_items_never_raise(raw: Any) -> None:
    out = wire.parse_summary(raw)
    assert isinstance(out, m.Summary | m.BadSummary)
    if isinstance(out, m.BadSummary):
        assert out.fields and all(isinstance(f, str) for f in out.fields)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(sorted(good_record())),
        json_values | deep_values | dirty_text | ZERO_DATES,
        max_size=5,
    ),
    st.sets(st.sampled_from(sorted(good_record())), max_size=3),
)
def test_details_are_parsed_or_named_invalid(changes: dict[str, Any], drop: set[str]) -> None:
    raw = {**good_record(), **changes}
    for key in drop:
        raw.pop(key, None)
    try:
        c = wire.parse_complaint(raw, "4100001")
    except InvalidRecord as exc:
        assert exc.tracking_id == "4100001" and exc.fields
        for value in changes.values():  # the message names fields, never values
            if isinstance(value, str) and len(value) > 3:
                assert value not in str(exc).replace("4100001", "")
    else:
        assert c.tracking_id == "4100001"
        assert c.reporter is None or not c.anonymous
        # Whatever was kept is storable on every backend: no NUL, encodable as UTF-8.
        for text in (c.title, c.body, c.category.name):
            assert "\x00" not in text
            text.encode("utf-8")
        assert all(
            r.endswith(("NUL removed", "lone surrogate replaced", "zero date treated as absent"))
            for r in c.repairs
        )


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=40) | dirty_text)
def test_terminal_output_is_neutralised(text: str) -> None:
    from connector.term import safe

    shown = safe(text, inline=True)
    assert not any(
        ord(ch) < 0x20
        or 0x7F <= ord(ch) <= 0x9F
        or 0xD800 <= ord(ch) <= 0xDFFF
        or ch in "\u202a\u202b\u202c\u202d\u202e"
        for ch in shown
    )
    shown.encode("utf-8")


toml_text = st.one_of(
    st.text(max_size=200),
    st.lists(
        st.sampled_from(
            [
                "[lapor]",
                "[storage]",
                "[sync]",
                "[log]",
                "[nosuch]",
                'base_url = "sandbox"',
                "instansi_id = 6411",
                'instansi_id = "x"',
                "overlap_s = -1",
                "pull_interval_s = 0",
                'level = "debug"',
                'format = "xml"',
                "url = 5",
                "x = [1, 2",
                "= 3",
                "[[agency]]",
                "requests_per_minute = 1e9",
                "page_size = 500",
            ]
        ),
        max_size=8,
    ).map("\n".join),
)


@settings(max_examples=250, suppress_health_check=[HealthCheck.too_slow])
@given(toml_text)
def test_settings_files_validate_or_name_the_problem(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "settings.toml"
        path.write_text(text, encoding="utf-8")
        try:
            load_config(path, environ={})
        except ConfigError as exc:
            assert str(path) in str(exc)


mapping_lines = st.lists(
    st.sampled_from(
        [
            "[[agency]]",
            'code = "DINKES"',
            'code = "dinkes"',
            'code = "X"',
            'name = "Dinas"',
            "name = 5",
            "lapor_unit_ids = [6411001]",
            "lapor_unit_ids = [6411001, 6411001]",
            'lapor_unit_ids = ["a"]',
            "lapor_unit_ids = []",
            "extra = 1",
            "[agency]",
            "lapor_unit_ids",
            '"unterminated',
            "[[status]]",
            'lapor = "selesai"',
        ]
    ),
    max_size=12,
).map("\n".join)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mapping_lines | st.text(max_size=120))
def test_mapping_files_validate_or_name_the_file(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "mappings"
        shutil.copytree(ROOT / "mappings", d)
        (d / "agencies.toml").write_text(text, encoding="utf-8")
        try:
            load(d)
        except MappingError as exc:
            assert exc.problems
            assert all(
                p.split(": ")[0] in ("agencies.toml", "statuses.toml", "categories.toml")
                and p.count(": ") >= 3
                for p in exc.problems
            )
