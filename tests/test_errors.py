"""The error tree: every exception of ours in ``connector/errors.py`` under a what-next
base, foreign errors mapped at one boundary, and a bug of ours never a quarantine row."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest

import connector
from connector import errors
from connector.errors import (
    ConnectorError,
    Fatal,
    LaporUnavailable,
    Refused,
    RetryLater,
    SkipRecord,
    mapped,
)
from connector.lapor import wire
from connector.sandbox import Faults, World
from connector.sync import core
from tests.conftest import FakeTime
from tests.harness import Harness

ROOT = Path(connector.__file__).parent
BASES = (Fatal, RetryLater, SkipRecord, Refused)
# Not errors: Starlette's way to answer a redirect from deep inside a handler.
NOT_ERRORS = {("desk/web.py", "_Redirect")}


def _ours() -> list[type[ConnectorError]]:
    return [
        v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, ConnectorError)
    ]


def test_every_error_of_ours_is_under_a_what_next_base_and_drawn_in_the_tree() -> None:
    doc = errors.__doc__ or ""
    for cls in _ours():
        assert cls.__module__ == "connector.errors"
        assert re.search(rf"── {cls.__name__}\b", doc) or cls is ConnectorError, (
            f"{cls.__name__} is not drawn in the tree"
        )
        if cls is not ConnectorError:
            assert issubclass(cls, BASES), f"{cls.__name__} is under no what-next base"


def test_no_exception_is_defined_outside_errors_py() -> None:
    """The sandbox is LAPOR!, not the connector: its ``ApiFault`` builds error answers."""
    exception_names = {
        "Exception",
        "BaseException",
        "ValueError",
        "OSError",
        "KeyError",
        "TypeError",
        "RuntimeError",
        "LookupError",
        "HTTPException",
    }
    exception_names |= {c.__name__ for c in _ours()}
    found = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        if rel == "errors.py" or rel.startswith(("sandbox/", "store/migrations/")):
            continue
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if (
                isinstance(node, ast.ClassDef)
                and (rel, node.name) not in NOT_ERRORS
                and any(ast.unparse(b).split(".")[-1] in exception_names for b in node.bases)
            ):
                found.append(f"{rel}: {node.name}")
    assert found == []


def test_exit_codes_follow_the_category() -> None:
    assert errors.ConfigError("x").exit_code == 2 and errors.MappingError(["x"]).exit_code == 2
    assert errors.AccountError("x").exit_code == 1
    assert errors.InvalidAccount("x").exit_code == 2
    assert errors.InvalidAction("x").exit_code == 2
    assert errors.TrackerRefusal("x").exit_code == 1
    assert errors.TrackerRefusal("x", 2).exit_code == 2  # the raise sites of builtin.py
    # Callers that catch the built-in still do.
    assert isinstance(errors.NotRegularFile("x"), OSError)
    assert isinstance(errors.AccountError("x"), ValueError)


def test_mapped_raises_ours_for_the_first_kind_that_matches_unchained() -> None:
    rules: errors.Rules = {
        KeyError: lambda e: LaporUnavailable(f"key {e.__class__.__name__}"),
        LookupError: lambda _: LaporUnavailable("lookup"),
    }
    with pytest.raises(LaporUnavailable, match="key KeyError") as info, mapped(rules):
        empty: dict[str, int] = {}
        empty["secret"]
    assert info.value.__cause__ is None and info.value.__suppress_context__
    with pytest.raises(LaporUnavailable, match="lookup"), mapped(rules):
        [][1]
    with pytest.raises(ValueError), mapped(rules):
        int("x")  # a ValueError: in no rule
    with mapped(rules):
        pass


def test_record_errors_hold_data_errors_only() -> None:
    assert not issubclass(KeyError, errors.RECORD_ERRORS)
    assert not issubclass(TypeError, errors.RECORD_ERRORS)
    assert issubclass(OverflowError, errors.RECORD_ERRORS)


# -- a bug of ours fails the cycle loudly -------------------------------------------------


@pytest.fixture
def h(tmp_path: Path, db_url: str, fake_time: FakeTime) -> Harness:
    world = World(seed=21, complaints=12, faults=Faults(rate_limit_per_minute=0), clock=fake_time)
    return Harness(tmp_path / "site", db_url, world, fake_time)


def _broken(error: type[Exception]) -> Any:
    def broken(*_: Any, **__: Any) -> Any:
        raise error("a bug of ours")

    return broken


@pytest.mark.anyio
@pytest.mark.parametrize("error", [KeyError, TypeError])
@pytest.mark.parametrize("where", ["decide", "parse"])
async def test_a_key_or_type_error_of_ours_fails_the_pull_never_a_quarantine_row(
    h: Harness, monkeypatch: pytest.MonkeyPatch, error: type[Exception], where: str
) -> None:
    if where == "decide":
        monkeypatch.setattr(core, "decide", _broken(error))
    else:
        monkeypatch.setattr(wire, "parse_complaint", _broken(error))
    with pytest.raises(error, match="a bug of ours"):
        await h.pull()
    assert h.quarantine() == []
    assert h.tickets() == []


@pytest.mark.anyio
async def test_dirty_data_in_decide_is_still_one_records_quarantine(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core, "decide", _broken(OverflowError))
    pulled = await h.pull()
    q = h.quarantine()
    assert q and pulled["quarantined"] == len(q)
    assert {x["reason"] for x in q} == {"invalid_record"}
    assert all(x["detail"] == "cannot be processed: OverflowError" for x in q)
