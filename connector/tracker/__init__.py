"""Local tracking systems behind one port (``port.TrackerPort``); the built-in one also
offers the in-transaction ``base.Tracker``."""

from connector.tracker.base import NewMessage, NewTicket, OfficerChange, TicketUpdate, Tracker
from connector.tracker.port import Intent, TrackerPort

__all__ = [
    "Intent",
    "NewMessage",
    "NewTicket",
    "OfficerChange",
    "TicketUpdate",
    "Tracker",
    "TrackerPort",
]
