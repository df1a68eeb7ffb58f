"""Mahulu SP4N-LAPOR! connector."""

__version__ = "0.1.0"
