"""E-mail notifications: who gets what (``queue``, inside the transaction of the change
that causes it), what a message says (``core``, pure) and sending it (``send``, the
daemon's job, with aiosmtplib or into ``var/mail/`` in the sandbox)."""
