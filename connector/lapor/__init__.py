"""Everything that knows LAPOR!'s wire format lives in this package.

When the real SP4N-LAPOR! documentation replaces ``shared/spec``, only
``wire.py``, ``policy.py`` and ``client.py`` change; the sync engine sees the
English domain models of ``models.py``.
"""
