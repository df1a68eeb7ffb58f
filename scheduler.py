"""The connector daemon: python scheduler.py [--config PATH].

Only the entry point; the wiring is ``connector.service`` so that the
installed ``lapor-connector run`` is the same program.
"""

from connector.service import main

if __name__ == "__main__":
    raise SystemExit(main())
