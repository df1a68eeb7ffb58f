"""A pytest run over a throwaway suite in ``tmp_path``, for tests of the suite's own
guards (the backend guard, the seed reports): what the inner run printed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def run_inner_suite(
    tmp_path: Path, conftest: str, inner: str, env: dict[str, str] | None = None
) -> str:
    """``conftest`` and ``test_inner.py`` written to ``tmp_path`` and run from the project
    root (so ``tests.`` imports resolve), without the project's pytest settings."""
    (tmp_path / "conftest.py").write_text(conftest)
    (tmp_path / "test_inner.py").write_text(inner)
    (tmp_path / "empty.ini").write_text("")  # not the project's settings (testpaths etc.)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-c",
            str(tmp_path / "empty.ini"),
            "--rootdir",
            str(tmp_path),
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    return r.stdout
