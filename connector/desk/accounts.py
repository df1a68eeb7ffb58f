"""Desk accounts, server-side sessions and login throttling, over the store's tables.

Passwords are argon2id hashes. A session cookie carries a random token; the database
keeps only its SHA-256, so a copy of the database opens no session. Every function takes
the caller's transaction; policy (who may do what) is ``access.py``.
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Connection, Row, and_, delete, func, insert, select, update

from connector.errors import AccountError, InvalidAccount
from connector.store.schema import (
    desk_audit,
    desk_login_failures,
    desk_sessions,
    desk_users,
)
from connector.timeutil import as_utc

MIN_PASSWORD = 10
SESSION_IDLE = timedelta(hours=12)
# Throttling: failures per (account, address) in the window stop that address for that
# account; past the per-account ceiling (many addresses), each address gets one try a
# minute for that account, which slows guessing without locking the officer out.
THROTTLE_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_ADDRESS = 10
ACCOUNT_CEILING = 50
CEILING_SPACING = timedelta(minutes=1)
LOGIN_RE = re.compile(r"[a-z0-9][a-z0-9._-]{1,63}")
EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_hasher = PasswordHasher()  # argon2id, the library's current parameters


class Role(enum.StrEnum):
    PETUGAS = "petugas"  # an agency's officer: reads and answers its complaints
    PIMPINAN = "pimpinan"  # an agency head or the inspectorate: reads, never acts
    ADMIN = "admin"  # reads everything; manages accounts


@dataclass(frozen=True)
class User:
    id: int
    login: str
    name: str
    role: Role
    agencies: tuple[str, ...]
    email: str | None
    must_change: bool
    disabled: bool

    @property
    def can_act(self) -> bool:
        return self.role == Role.PETUGAS

    @property
    def sees_all(self) -> bool:
        return self.role == Role.ADMIN


def check_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidAccount(
            f"the password has {len(password)} characters; at least {MIN_PASSWORD} are needed"
        )


def hash_new(password: str) -> str:
    """A new password's argon2id hash, checked first. Slow (tens of MiB, a fraction of a
    second) on purpose: callers hash before opening a transaction, never inside one."""
    check_new_password(password)
    return _hasher.hash(password)


def password_matches(stored: str, password: str) -> bool:
    """argon2 verification: CPU and memory only, outside any transaction."""
    try:
        return bool(_hasher.verify(stored, password))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def validate(
    login: str,
    name: str,
    role: str,
    agencies: list[str],
    email: str | None,
    known_agencies: set[str],
) -> Role:
    """The checks of ``users add`` (exit 2, naming the problem); returns the role."""
    if not LOGIN_RE.fullmatch(login):
        raise InvalidAccount(
            f"login {login!r}: 2 to 64 lowercase letters, digits, '.', '_' "
            "or '-', starting with a letter or digit"
        )
    if not name.strip() or len(name) > 200:
        raise InvalidAccount("--name: give the person's name (at most 200 characters)")
    try:
        parsed = Role(role)
    except ValueError:
        raise InvalidAccount(
            f"--role: unknown role {role!r} (petugas, pimpinan or admin)"
        ) from None
    for code in agencies:
        if code not in known_agencies:
            raise InvalidAccount(f"--agency: unknown agency {code!r} (see agencies.toml)")
    if parsed in (Role.PETUGAS, Role.PIMPINAN) and not agencies:
        raise InvalidAccount(f"--role {parsed}: give the agency with --agency CODE")
    if email is not None and not EMAIL_RE.fullmatch(email):
        raise InvalidAccount(f"--email: not an e-mail address: {email!r}")
    return parsed


def _user(r: Row[Any]) -> User:
    return User(
        id=r.id,
        login=r.login,
        name=r.name,
        role=Role(r.role),
        agencies=tuple(a for a in r.agencies.split(",") if a),
        email=r.email,
        must_change=bool(r.must_change),
        disabled=bool(r.disabled),
    )


def add_user(
    conn: Connection,
    login: str,
    name: str,
    role: Role,
    agencies: list[str],
    email: str | None,
    password_hash: str,
    now: datetime,
    must_change: bool,
) -> User:
    if conn.execute(select(desk_users.c.id).where(desk_users.c.login == login)).first():
        raise AccountError(f"login {login!r} exists already")
    conn.execute(
        insert(desk_users).values(
            login=login,
            name=name.strip(),
            role=str(role),
            agencies="," + ",".join(dict.fromkeys(agencies)) + ",",
            email=email,
            password_hash=password_hash,
            must_change=must_change,
            disabled=False,
            created_at=now,
            updated_at=now,
        )
    )
    found = get_user(conn, login)
    assert found is not None
    return found


def get_user(conn: Connection, login: str) -> User | None:
    r = conn.execute(select(desk_users).where(desk_users.c.login == login)).first()
    return None if r is None else _user(r)


def list_users(conn: Connection) -> list[User]:
    return [_user(r) for r in conn.execute(select(desk_users).order_by(desk_users.c.login))]


def officers_of(conn: Connection, agency: str) -> list[User]:
    """Enabled officers of an agency: who a ticket may be assigned to."""
    q = (
        select(desk_users)
        .where(
            desk_users.c.role == str(Role.PETUGAS),
            desk_users.c.disabled.is_(False),
            desk_users.c.agencies.contains(f",{agency},", autoescape=True),
        )
        .order_by(desk_users.c.name)
    )
    return [_user(r) for r in conn.execute(q)]


def _must_exist(conn: Connection, login: str) -> User:
    user = get_user(conn, login)
    if user is None:
        raise AccountError(f"no user with login {login!r}")
    return user


def set_disabled(conn: Connection, login: str, disabled: bool, now: datetime) -> User:
    user = _must_exist(conn, login)
    conn.execute(
        update(desk_users)
        .where(desk_users.c.id == user.id)
        .values(disabled=disabled, updated_at=now)
    )
    if disabled:
        end_sessions(conn, user.id)
    return user


def set_password(
    conn: Connection, login: str, password_hash: str, now: datetime, must_change: bool
) -> User:
    """A new password (``hash_new``); every session of the user ends (the caller opens a
    new one)."""
    user = _must_exist(conn, login)
    conn.execute(
        update(desk_users)
        .where(desk_users.c.id == user.id)
        .values(password_hash=password_hash, must_change=must_change, updated_at=now)
    )
    end_sessions(conn, user.id)
    return user


def credentials(conn: Connection, login: str) -> tuple[User | None, str]:
    """The account and its stored hash; for a missing login a dummy hash, so verifying
    costs the same and timing does not tell which logins exist."""
    r = conn.execute(select(desk_users).where(desk_users.c.login == login)).first()
    return (None, _DUMMY) if r is None else (_user(r), r.password_hash)


_DUMMY = _hasher.hash(secrets.token_hex(16))


# -- sessions ---------------------------------------------------------------------------------


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(conn: Connection, user: User, now: datetime) -> str:
    """A new session; returns the cookie's token (stored only as its hash)."""
    token = secrets.token_urlsafe(32)
    conn.execute(
        insert(desk_sessions).values(
            token_hash=_digest(token), user_id=user.id, created_at=now, last_seen_at=now
        )
    )
    return token


def find_session(conn: Connection, token: str) -> tuple[User, datetime] | None:
    """The session's user and when it was last used (a read: no write lock)."""
    r = conn.execute(
        select(desk_sessions.c.last_seen_at, desk_users)
        .join(desk_users, desk_users.c.id == desk_sessions.c.user_id)
        .where(desk_sessions.c.token_hash == _digest(token))
    ).first()
    return None if r is None else (_user(r), as_utc(r.last_seen_at))


def session_verdict(user: User, last_seen: datetime, now: datetime) -> str:
    """``end`` (idle too long, or disabled), ``touch`` (due a new last-seen; at most once
    a minute, so most page views only read) or ``ok``."""
    if user.disabled or now - last_seen > SESSION_IDLE:
        return "end"
    return "touch" if now - last_seen > timedelta(minutes=1) else "ok"


def touch_session(conn: Connection, token: str, now: datetime) -> None:
    conn.execute(
        update(desk_sessions)
        .where(desk_sessions.c.token_hash == _digest(token))
        .values(last_seen_at=now)
    )


def csrf_token(token: str) -> str:
    """The session's CSRF token: derived from the cookie's token, never stored."""
    return hashlib.sha256(b"csrf:" + token.encode()).hexdigest()[:40]


def close_session(conn: Connection, token: str) -> None:
    conn.execute(delete(desk_sessions).where(desk_sessions.c.token_hash == _digest(token)))


def end_sessions(conn: Connection, user_id: int) -> None:
    conn.execute(delete(desk_sessions).where(desk_sessions.c.user_id == user_id))


def purge(conn: Connection, now: datetime) -> None:
    """Forget idle sessions and old login failures."""
    conn.execute(delete(desk_sessions).where(desk_sessions.c.last_seen_at < now - SESSION_IDLE))
    conn.execute(
        delete(desk_login_failures).where(desk_login_failures.c.at < now - THROTTLE_WINDOW)
    )


# -- throttling -------------------------------------------------------------------------------


def throttled(conn: Connection, login: str, address: str, now: datetime) -> timedelta | None:
    """How long this address must wait before trying this login again, or None."""
    since = now - THROTTLE_WINDOW
    here = conn.execute(
        select(func.count(), func.min(desk_login_failures.c.at)).where(
            desk_login_failures.c.login == login,
            desk_login_failures.c.address == address,
            desk_login_failures.c.at >= since,
        )
    ).one()
    if here[0] >= MAX_FAILURES_PER_ADDRESS:
        return as_utc(here[1]) + THROTTLE_WINDOW - now
    total = conn.execute(
        select(func.count()).where(
            desk_login_failures.c.login == login, desk_login_failures.c.at >= since
        )
    ).scalar_one()
    if total >= ACCOUNT_CEILING:
        last = conn.execute(
            select(func.max(desk_login_failures.c.at)).where(
                and_(desk_login_failures.c.login == login, desk_login_failures.c.address == address)
            )
        ).scalar_one()
        if last is not None and now - as_utc(last) < CEILING_SPACING:
            return as_utc(last) + CEILING_SPACING - now
    return None


def record_failure(conn: Connection, login: str, address: str, now: datetime) -> None:
    conn.execute(insert(desk_login_failures).values(login=login, address=address, at=now))


def throttle_key(login: str, address: str) -> tuple[str, str]:
    """What failures are counted by: the login as stored (64 characters) and the client's
    address, an IPv6 one by its /64 (one host has many addresses in its network)."""
    import ipaddress

    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return login[:64], address[:64]
    if ip.version == 6:
        return login[:64], str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return login[:64], str(ip)


def clear_failures(conn: Connection, login: str, address: str) -> None:
    conn.execute(
        delete(desk_login_failures).where(
            desk_login_failures.c.login == login, desk_login_failures.c.address == address
        )
    )


# -- the audit log ----------------------------------------------------------------------------


def audit(
    conn: Connection,
    login: str,
    action: str,
    tracking_id: str | None,
    now: datetime,
    detail: str | None = None,
) -> None:
    """Who did what to which complaint: never the complaint's text."""
    conn.execute(
        insert(desk_audit).values(
            at=now, login=login, action=action, tracking_id=tracking_id, detail=detail
        )
    )
