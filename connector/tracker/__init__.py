"""Local tracking systems behind one interface (``Tracker``)."""

from connector.tracker.base import NewMessage, NewTicket, OfficerChange, TicketUpdate, Tracker

__all__ = ["NewMessage", "NewTicket", "OfficerChange", "TicketUpdate", "Tracker"]
