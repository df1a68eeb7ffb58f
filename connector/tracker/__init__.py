"""Local tracking systems behind one interface (``Tracker``)."""

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
