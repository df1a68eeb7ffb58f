#!/usr/bin/env bash
# The two commands of the README:
#   ./dev.sh run    set everything up, then run the daemon on embedded defaults
#   ./dev.sh test   set everything up, then run ruff, mypy and the whole test suite
# Extra arguments go to scheduler.py (run) or pytest (test).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ] || [ pyproject.toml -nt .venv/.installed ]; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
  touch .venv/.installed
fi
case "${1:-}" in
  run)
    shift
    exec .venv/bin/python scheduler.py "$@"
    ;;
  test)
    shift
    .venv/bin/ruff check .
    .venv/bin/mypy
    set +e
    .venv/bin/python -m pytest "$@"
    rc=$?
    set -e
    # pytest exits 5 when it collected no test: that must never pass as green.
    if [ "$rc" -eq 5 ]; then echo "error: no tests ran" >&2; exit 1; fi
    exit "$rc"
    ;;
  *)
    echo "usage: ./dev.sh run|test [args]" >&2
    exit 2
    ;;
esac
