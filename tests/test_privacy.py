"""The privacy decision (``connector/privacy.py``): decided once, applied by each tracker."""

from __future__ import annotations

from connector.privacy import REDACTED, PrivacyChange, identity, scrub, scrub_json, without_reporter


def test_privacy_only_tightens() -> None:
    assert PrivacyChange.of(
        True, True, was_anonymous=False, was_confidential=False
    ) == PrivacyChange(forget_reporter=True, restrict=True)
    assert (
        PrivacyChange.of(True, True, was_anonymous=True, was_confidential=True) == PrivacyChange()
    )
    # LAPOR! clearing a flag, or an update that did not look at them, loosens nothing.
    assert (
        PrivacyChange.of(False, None, was_anonymous=True, was_confidential=True) == PrivacyChange()
    )


def test_the_identity_is_removed_wherever_it_occurs() -> None:
    ident = identity(["Siti Aminah", None, "", "ab", " 0812 "])
    assert ident == ["Siti Aminah", " 0812 "]  # too short to be theirs: kept
    assert scrub("Saya Siti Aminah, ab, 0812", ident) == f"Saya {REDACTED}, ab, 0812"
    assert scrub_json([{"name": "ktp Siti Aminah.jpg", "size": 3}], ident) == [
        {"name": f"ktp {REDACTED}.jpg", "size": 3}
    ]


def test_a_waiting_new_ticket_forgets_its_reporter() -> None:
    before = {"tracking_id": "1", "anonymous": False, "reporter": {"name": "Siti"}}
    assert without_reporter(before) == {"tracking_id": "1", "anonymous": True, "reporter": None}
    assert list(without_reporter(before)) == list(before)  # the stored JSON keeps its order
