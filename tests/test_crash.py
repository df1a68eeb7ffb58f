"""SIGKILL at seeded random moments: real sandbox process, real connector processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from connector.reliability import campaign, campaign_mappings, shipped_mappings

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("seed", [11])
def test_kills_never_lose_or_duplicate(tmp_path: Path, db_url: str, seed: int) -> None:
    # PostgreSQL: a shorter campaign (fewer complaints and kills) to keep the suite's time.
    pg = db_url.startswith("postgresql")
    fig = campaign(
        tmp_path,
        complaints=250 if pg else 500,
        changes=8 if pg else 12,
        kills=5 if pg else 8,
        seed=seed,
        db_url=db_url,
    )
    assert fig.kills_pull + fig.kills_push >= 3  # the kills really hit running processes
    assert fig.kills_verify >= 1  # ...also while entries waited to be verified on LAPOR!
    assert fig.tickets > 0 and fig.changes_committed > 0
    assert fig.lost_complaints == 0
    assert fig.duplicate_tickets == 0
    assert fig.duplicate_followups == 0
    assert fig.missing_followups == 0
    assert fig.half_written_updates == 0
    assert fig.followups_created == fig.changes_committed


def test_campaign_takes_the_configured_mappings_else_the_shipped_ones(tmp_path: Path) -> None:
    shipped = sorted(p.name for p in shipped_mappings().glob("*.toml"))
    assert shipped == sorted(p.name for p in (ROOT / "mappings").glob("*.toml"))
    own = tmp_path / "own"
    own.mkdir()
    (own / "statuses.toml").write_text("")
    assert campaign_mappings(own) == own
    empty = tmp_path / "empty"
    empty.mkdir()
    assert campaign_mappings(empty) == shipped_mappings()
    assert campaign_mappings(tmp_path / "missing") == shipped_mappings()


def _install_wheel(tmp_path: Path) -> Path:
    """Build a wheel from a copy of the sources (the checkout stays clean) and install it,
    non-editable, into a folder of its own. No network: no build isolation, no index."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("connector", "mappings"):
        ignore = shutil.ignore_patterns("__pycache__")
        shutil.copytree(ROOT / name, src / name, symlinks=True, ignore=ignore)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    wheels, target = tmp_path / "wheels", tmp_path / "installed"
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(src)]
    subprocess.run(build, check=True, capture_output=True, timeout=300)
    [wheel] = wheels.glob("*.whl")
    install = [*pip, "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)]
    subprocess.run(install, check=True, capture_output=True, timeout=300)
    return target


def test_reliability_runs_from_an_installed_package(tmp_path: Path) -> None:
    target = _install_wheel(tmp_path)
    # A throwaway venv's interpreter: the test venv's editable install (.pth) is not read,
    # so `connector` comes from the wheel and only the dependencies from the test venv.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "PYTHONPATH": os.pathsep.join([str(target), *sorted(deps)]),
    }
    work = tmp_path / "work"  # no mappings folder beside its settings file
    work.mkdir()
    (work / "settings.toml").write_text('[log]\nlevel = "warning"\n')
    where = subprocess.run(
        [python, "-c", "import connector; print(connector.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(target)
    assert not (target / "connector" / "shipped_mappings").is_symlink()
    campaign_args = ["--kills", "1", "--complaints", "20", "--changes", "2"]
    r = subprocess.run(
        [python, "-m", "connector", "reliability", *campaign_args],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "the campaign runs with the package's own" in r.stderr
    fig = json.loads(r.stdout)
    assert fig["ok"] is True
    assert fig["tickets"] == 20 and fig["lost_complaints"] == 0
    assert fig["changes_committed"] > 0 and fig["duplicate_followups"] == 0
