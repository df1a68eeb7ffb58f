"""A built-in SP4N-LAPOR! sandbox serving ``shared/spec`` exactly, plus faults.

Use ``create_app(World(...))`` in-process through ``httpx.ASGITransport`` or
``lapor-connector sandbox --port P`` on loopback.
"""

from connector.sandbox.app import create_app
from connector.sandbox.faults import Faults
from connector.sandbox.world import World

__all__ = ["Faults", "World", "create_app"]
