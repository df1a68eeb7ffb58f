"""A failed test names its seeds (conftest.py's report hook, tests/seeds.py), and the
fake clock's start replays."""

from __future__ import annotations

import os
from pathlib import Path

from connector.sandbox import World
from tests.conftest import FakeTime
from tests.inner import run_inner_suite
from tests.seeds import CLOCK_ENV, SeededRandom, seeds_in

INNER = """
from connector.sandbox import World
from tests.seeds import SeededRandom


def test_fixture_world_and_a_generator(world, fake_time):
    world.set_faults({"rate_5xx": 1.0})
    try:
        world.before_request()
    except Exception:
        pass
    rng = SeededRandom(99)
    assert rng.random() > 2


def test_a_world_of_its_own(fake_time):
    w = World(seed=1234, complaints=3, clock=fake_time)
    assert w.seed == 0


def test_passes(world):
    pass


def test_the_clock_replays(fake_time):
    assert fake_time.start == 1780000000.0
"""


def _run_inner(tmp_path: Path, env: dict[str, str]) -> str:
    return run_inner_suite(tmp_path, "from tests.conftest import *  # noqa: F403\n", INNER, env)


def test_a_failed_test_names_its_worlds_generators_and_clock(tmp_path: Path) -> None:
    out = _run_inner(tmp_path, {k: v for k, v in os.environ.items() if k != CLOCK_ENV})
    first, _, rest = out.partition("test_a_world_of_its_own")
    assert "sandbox World(seed=7); faults fired: rate_5xx=1" in first
    assert "random.Random(99)" in first
    assert "fake clock started at 20" in first and f"replay with {CLOCK_ENV}=" in first
    assert "sandbox World(seed=1234); faults fired: none" in rest
    assert "test_passes" not in out  # a passing test has no report to add to
    assert "3 failed, 1 passed" in out  # the clock test fails: it started now


def test_the_fake_clock_starts_where_a_failed_run_started(tmp_path: Path) -> None:
    out = _run_inner(tmp_path, {**os.environ, CLOCK_ENV: "1780000000"})
    assert "2 failed, 2 passed" in out
    assert "fake clock started at 2026-05-28T20:26:40+00:00" in out


def test_seeds_are_found_in_attributes_each_once() -> None:
    clock = FakeTime()
    world = World(seed=5, complaints=1, clock=clock)

    class Holder:
        def __init__(self) -> None:
            self.world, self.rng, self.again = world, SeededRandom(3), world

    assert seeds_in([Holder(), "text", 5], depth=1) == [
        "sandbox World(seed=5); faults fired: none",
        "random.Random(3)",
    ]
    deeper = seeds_in([Holder()])  # the world's clock is one level further down
    assert len(deeper) == 3 and deeper[2].startswith("fake clock started at ")
