"""Privacy changes LAPOR! makes after a ticket exists, decided here once; each tracker only
applies the decision to what it keeps (built-in rows, a Redmine description, a create
intent still waiting).

The rules: privacy never loosens. A complaint that becomes *anonim* loses its reporter,
and every occurrence of the reporter's name, e-mail and phone (of 3 characters or more)
in the text is replaced; one that becomes *rahasia* is restricted. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar, cast

REDACTED = "[identitas dihapus]"
MIN_IDENTITY = 3  # shorter values would replace ordinary words
P = TypeVar("P", bound=Mapping[str, object])


def tightened(now: bool | None, before: bool) -> bool:
    """Whether LAPOR! sets a privacy flag the local copy does not have yet."""
    return bool(now) and not before


@dataclass(frozen=True)
class PrivacyChange:
    """What a tracker must do to its copy."""

    forget_reporter: bool = False  # anonim later: the reporter and their identity go
    restrict: bool = False  # rahasia later: the ticket is restricted (a private issue)

    @staticmethod
    def of(
        anonymous: bool | None,
        confidential: bool | None,
        *,
        was_anonymous: bool,
        was_confidential: bool,
    ) -> PrivacyChange:
        """``anonymous``/``confidential``: LAPOR!'s flags as an update carries them (None:
        not looked at); ``was_*``: the tracker's copy."""
        return PrivacyChange(
            tightened(anonymous, was_anonymous), tightened(confidential, was_confidential)
        )


def identity(values: Iterable[str | None]) -> list[str]:
    """The reporter's values worth removing from text: long enough to be theirs."""
    return [v for v in values if v and len(v.strip()) >= MIN_IDENTITY]


def scrub(text: str, ident: list[str]) -> str:
    """``text`` with every occurrence of the reporter's identity replaced."""
    for value in ident:
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def scrub_json(obj: object, ident: list[str]) -> object:
    """``scrub`` over every string of a JSON value (attachment names, …)."""
    if isinstance(obj, str):
        return scrub(obj, ident)
    if isinstance(obj, list):
        return [scrub_json(v, ident) for v in obj]
    if isinstance(obj, dict):
        return {k: scrub_json(v, ident) for k, v in obj.items()}
    return obj


def without_reporter(ticket: P) -> P:
    """A new ticket (as JSON) whose complaint became anonim before the tracker had it."""
    return cast(P, {**ticket, "anonymous": True, "reporter": None})
