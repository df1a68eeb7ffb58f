"""Benchmark: the start-up CPU of the commands that only read the database.

``status``, ``tickets list`` and ``quarantine list`` run on the demo database (what
``lapor-connector sync`` pulls from the embedded sandbox: 60 complaints), once with this
tree and once with a base commit (default: 5c3c7a6, the commit before the CLI split),
checked out as a git worktree and run with this venv through ``PYTHONPATH``. The runs
interleave base and head, so both see the same machine load; each figure is the best of
``--rounds`` (CPU time, user + sys of the child: ``RUSAGE_CHILDREN`` deltas). The ratio
is head over base, measured side by side in one run; the issue's target is <= 0.5.

    .venv/bin/python benchmarks/startup.py [--rounds 20] [--base 5c3c7a6] [--db DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HEAD = Path(__file__).resolve().parent.parent
COMMANDS = (("status",), ("tickets", "list"), ("quarantine", "list"))


def _demo(where: Path) -> Path:
    """A settings file next to a database the sandbox's demo data was pulled into."""
    shutil.copy(HEAD / "settings.toml", where / "settings.toml")
    shutil.copytree(HEAD / "mappings", where / "mappings")
    (where / "var").mkdir()
    subprocess.run(
        [sys.executable, "-m", "connector", "sync"],
        cwd=where,
        env=_env(HEAD),
        check=True,
        capture_output=True,
    )
    return where / "settings.toml"


def _env(tree: Path) -> dict[str, str]:
    # Bytecode caches are written (the warm-up runs write them), as an installed
    # package has them: compiling from source would dwarf what is measured.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPATH": str(tree)}


def _cpu(tree: Path, cfg: Path, command: tuple[str, ...]) -> float:
    """CPU seconds (user + sys) of one run of the command from that tree."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run(
        [sys.executable, "-m", "connector", "--config", str(cfg), *command],
        cwd=cfg.parent,
        env=_env(tree),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode not in (0, 1):  # status: 1 when degraded
        raise SystemExit(f"{tree}: {' '.join(command)} exited {r.returncode}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--base", default="5c3c7a6")
    ap.add_argument("--db", type=Path, help="a folder with settings.toml (default: a new demo)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="startup-") as tmp:
        base = Path(tmp) / "base"
        subprocess.run(
            ["git", "-C", str(HEAD), "worktree", "add", "--detach", str(base), args.base],
            check=True,
            capture_output=True,
        )
        try:
            if args.db:
                cfg = args.db.resolve() / "settings.toml"
            else:
                (Path(tmp) / "demo").mkdir()
                cfg = _demo(Path(tmp) / "demo")
            _measure(base, cfg, args.rounds)
        finally:
            subprocess.run(
                ["git", "-C", str(HEAD), "worktree", "remove", "--force", str(base)], check=True
            )


def _measure(base: Path, cfg: Path, rounds: int) -> None:
    best: dict[tuple[str, tuple[str, ...]], float] = {}
    for tree in (base, HEAD):  # warm the bytecode caches: not measured
        for command in COMMANDS:
            _cpu(tree, cfg, command)
    for _ in range(rounds):
        for command in COMMANDS:
            for name, tree in (("base", base), ("head", HEAD)):
                t = _cpu(tree, cfg, command)
                best[name, command] = min(best.get((name, command), t), t)
    print(f"best of {rounds}, CPU ms (user+sys)  base  head  ratio")
    for command in COMMANDS:
        b, h = best["base", command], best["head", command]
        print(f"{' '.join(command):<34} {b * 1000:5.0f} {h * 1000:5.0f}  {h / b:.2f}")


if __name__ == "__main__":
    main()
