#!/usr/bin/env bash
# The two commands of the README:
#   ./dev.sh run    set everything up, then run the daemon and the desk on embedded defaults
#   ./dev.sh test   set everything up, then run ruff (lint and format check), mypy
#                   (connector/ and tests/) and the whole test suite
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
    # The daemon and, beside it, the officer's desk (a separate process on the same
    # database; it prints its address and the demo logins). Ctrl-C stops both.
    .venv/bin/python -m connector "$@" db upgrade >/dev/null
    .venv/bin/python -m connector "$@" web &
    web=$!
    trap 'kill "$web" 2>/dev/null || true' EXIT
    .venv/bin/python scheduler.py "$@"
    ;;
  test)
    shift
    .venv/bin/ruff check .
    .venv/bin/ruff format --check .
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
