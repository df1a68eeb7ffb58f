"""Settings: ``settings.toml`` plus ``LAPOR_CONNECTOR_<SECTION>__<KEY>`` overrides.

Built once at start, validated, and passed in; nothing reads them as globals.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from connector.errors import ConfigError

ENV_PREFIX = "LAPOR_CONNECTOR_"
CONFIG_ENV = "LAPOR_CONNECTOR_CONFIG"
# The installed service's settings (deploy/settings.toml); the CLI falls back to it, so
# an operator's command reaches the same database as the unit without any option.
SYSTEM_CONFIG = Path("/etc/lapor-connector/settings.toml")
SANDBOX = "sandbox"
# The sandbox's published demo credentials (see shared/spec and the sandbox module).
DEMO_CLIENT_ID = "mahulu-demo"
DEMO_CLIENT_SECRET = "rahasia-demo-6411"  # noqa: S105 - public demo value, sandbox only
# Every duration is bounded: a huge one overflows date arithmetic (OverflowError), a tiny
# interval spins a core. The bounds are far from any sensible value.
HOUR = 3600
DAY = 86400


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LaporSettings(_Section):
    base_url: str = SANDBOX
    instansi_id: int = Field(6411, gt=0)
    requests_per_minute: int = Field(60, ge=0)
    timeout_s: float = Field(30.0, ge=0.1, le=HOUR)
    call_deadline_s: float = Field(120.0, ge=0.5, le=HOUR)
    max_retry_after_s: float = Field(300.0, gt=0, le=DAY)
    page_size: int = Field(100, ge=1, le=100)
    detail_concurrency: int = Field(8, ge=1, le=32)
    token_refresh_margin_s: float = Field(60.0, ge=0, le=HOUR)
    max_response_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    # How long LAPOR! remembers an Idempotency-Key.
    idempotency_ttl_s: float = Field(86400.0, ge=1, le=30 * DAY)

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if value == SANDBOX:
            return value
        if not value:
            raise ValueError(
                'is not set: give the LAPOR! API base URL ("https://…"), or '
                '"sandbox" for the built-in demo'
            )
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError('must be an http(s) URL or "sandbox"')
        if parts.scheme == "http" and not is_loopback(parts.hostname):
            raise ValueError(
                "plain http:// is only allowed for loopback hosts; use https:// "
                "(TLS verification is always on)"
            )
        return value.rstrip("/")


def is_loopback(host: str) -> bool:
    """The host must BE loopback (127.0.0.0/8, ::1, localhost), not merely start like it:
    ``127.0.0.1.example.org`` is a public name."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class StorageSettings(_Section):
    url: str = "sqlite:///var/connector.db"
    # SQLite: how long a writer waits for a lock.
    busy_timeout_s: float = Field(10.0, ge=0.1, le=HOUR)
    # PostgreSQL: the instance lease, renewed every third.
    lease_s: float = Field(60.0, ge=1, le=HOUR)


class MappingsSettings(_Section):
    dir: str = "mappings"
    reload_interval_s: float = Field(2.0, ge=0.1, le=HOUR)


class SyncSettings(_Section):
    pull_interval_s: float = Field(60.0, ge=1, le=DAY)
    push_interval_s: float = Field(30.0, ge=1, le=DAY)
    jitter_s: float = Field(2.0, ge=0, le=HOUR)
    overlap_s: int = Field(300, ge=0, le=7 * DAY)
    max_backoff_s: float = Field(900.0, ge=1, le=DAY)
    push_batch: int = Field(50, ge=1)
    stale_after_intervals: int = Field(3, ge=1)
    demo_officer: bool = False
    sweep_interval_s: float = Field(86400.0, ge=1, le=30 * DAY)
    sweep_window_s: int = Field(604800, ge=0, le=366 * DAY)
    # The tracker worker (external trackers).
    tracker_interval_s: float = Field(15.0, ge=0.5, le=DAY)


class AttachmentSettings(_Section):
    download: bool = False
    dir: str = "var/attachments"
    max_bytes: int = Field(20 * 1024 * 1024, ge=1)
    allowed_types: tuple[str, ...] = (
        "image/jpeg",
        "image/png",
        "application/pdf",
    )


class MetricsSettings(_Section):
    # host:port for /metrics and /healthz; "" turns the listener off.
    listen: str = "127.0.0.1:9840"

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        if value == "":
            return value
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError('must be "host:port" (e.g. "127.0.0.1:9840") or "" for off')
        return value

    @property
    def address(self) -> tuple[str, int] | None:
        if not self.listen:
            return None
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


class WebSettings(_Section):
    """The officer's desk (``lapor-connector web``)."""

    listen: str = "127.0.0.1:8080"
    # Reverse proxies whose X-Forwarded-Proto / X-Forwarded-For are believed (nginx on
    # the same host: "127.0.0.1"). Nobody else's.
    trusted_proxies: tuple[str, ...] = ()

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError('must be "host:port" (e.g. "127.0.0.1:8080")')
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network") from None
        return value

    @property
    def address(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


class NotifySettings(_Section):
    """E-mail notifications (``connector/notify/``). The password is the credential
    SMTP_PASSWORD (environment or $CREDENTIALS_DIRECTORY), never a setting."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    enabled: bool = False
    smtp_host: str = ""  # "sandbox": .eml files under var/mail/
    smtp_port: int = Field(0, ge=0, lt=65536)  # 0: 587 (starttls), 465 (tls), 25 (none)
    security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_user: str = ""
    from_: str = Field("", alias="from")
    desk_url: str = "http://127.0.0.1:8080"
    digest_time: str = "07:30"  # WITA, on working days
    timeout_s: float = Field(30.0, ge=0.1, le=HOUR)
    bundle_s: float = Field(60.0, ge=0, le=HOUR)  # one recipient, this close: one message
    mail_dir: str = "var/mail"  # smtp_host = "sandbox" only

    @field_validator("digest_time")
    @classmethod
    def _check_time(cls, value: str) -> str:
        h, sep, m = value.partition(":")
        if not (
            sep and h.isdigit() and m.isdigit() and len(m) == 2 and int(h) < 24 and int(m) < 60
        ):
            raise ValueError('must be "HH:MM" (WITA), e.g. "07:30"')
        return f"{int(h):02d}:{m}"

    @field_validator("desk_url")
    @classmethod
    def _check_desk(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                'must be the desk\'s http(s) URL, e.g. "https://lapor.mahulukab.go.id"'
            )
        return value.rstrip("/")

    @model_validator(mode="after")
    def _complete(self) -> NotifySettings:
        if not self.enabled:
            return self
        if not self.smtp_host:
            raise ValueError(
                "notify.enabled is true but notify.smtp_host is not set "
                '(the mail server, or "sandbox")'
            )
        if not re.fullmatch(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+", self.from_):
            raise ValueError(
                'notify.from: give the sender\'s e-mail address (e.g. "lapor@mahulukab.go.id")'
            )
        if (
            self.security == "none"
            and self.smtp_host != SANDBOX
            and not is_loopback(self.smtp_host)
        ):
            raise ValueError(
                'notify.security = "none" is only allowed to a loopback '
                'smtp_host; use "starttls" or "tls"'
            )
        return self

    @property
    def sandbox(self) -> bool:
        return self.smtp_host == SANDBOX

    @property
    def port(self) -> int:
        return self.smtp_port or {"starttls": 587, "tls": 465, "none": 25}[self.security]

    @property
    def digest_at(self) -> tuple[int, int]:
        h, _, m = self.digest_time.partition(":")
        return int(h), int(m)


class LogSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class SandboxSettings(_Section):
    seed: int = 6411
    complaints: int = Field(60, ge=0)
    generator: bool = True
    generator_interval_s: float = Field(5.0, ge=0.1, le=DAY)
    cursor_ttl_s: float = Field(600.0, ge=1, le=DAY)
    token_ttl_s: int = Field(3600, ge=1, le=30 * DAY)
    rate_limit_per_minute: int = Field(60, ge=0)
    extra_keys: bool = True


class RedmineSettings(_Section):
    url: str = ""
    project: str = ""
    tracking_field_id: int = Field(0, ge=0)
    timeout_s: float = Field(30.0, ge=0.1, le=HOUR)
    # How far back each read of officers' changes looks again (Redmine keeps whole
    # seconds, and a commit is not instantaneous); journals are de-duplicated by id.
    overlap_s: float = Field(60.0, ge=1, le=DAY)


class TrackerSettings(_Section):
    kind: Literal["builtin", "redmine"] = "builtin"
    redmine: RedmineSettings = Field(default_factory=RedmineSettings)

    @model_validator(mode="after")
    def _redmine_complete(self) -> TrackerSettings:
        if self.kind != "redmine":
            return self
        r = self.redmine
        missing = [
            k
            for k, v in (
                ("url", r.url),
                ("project", r.project),
                ("tracking_field_id", r.tracking_field_id),
            )
            if not v
        ]
        if missing:
            raise ValueError(
                'tracker.kind is "redmine" but tracker.redmine.'
                + ", tracker.redmine.".join(missing)
                + " is not set"
            )
        parts = urlsplit(r.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("tracker.redmine.url must be an http(s) URL")
        if parts.scheme == "http" and not is_loopback(parts.hostname):
            raise ValueError(
                "tracker.redmine.url: plain http:// is only allowed for loopback "
                "hosts; use https:// (TLS verification is always on)"
            )
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        case_sensitive=False,
    )

    lapor: LaporSettings = Field(default_factory=LaporSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    mappings: MappingsSettings = Field(default_factory=MappingsSettings)
    sync: SyncSettings = Field(default_factory=SyncSettings)
    attachments: AttachmentSettings = Field(default_factory=AttachmentSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    tracker: TrackerSettings = Field(default_factory=TrackerSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats the file; the file arrives as init kwargs.
        return (env_settings, init_settings)


@dataclass(frozen=True)
class Config:
    """Validated settings plus where they came from (to resolve relative paths)."""

    settings: Settings
    path: Path

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def resolve(self, value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else self.base_dir / p

    @property
    def database_url(self) -> str:
        url = self.settings.storage.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and url != "sqlite:///:memory:":
            rest = url[len(prefix) :]
            if not rest.startswith("/"):
                return prefix + str(self.resolve(rest))
        return url

    @property
    def database_display(self) -> str:
        """The database URL for people: any password masked."""
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            return make_url(self.database_url).render_as_string(hide_password=True)
        except ArgumentError:
            return "<invalid storage.url>"

    @property
    def mappings_dir(self) -> Path:
        return self.resolve(self.settings.mappings.dir)

    @property
    def attachments_dir(self) -> Path:
        return self.resolve(self.settings.attachments.dir)

    @property
    def sandbox_mode(self) -> bool:
        return self.settings.lapor.base_url == SANDBOX


def default_config_path(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Path:
    """``$LAPOR_CONNECTOR_CONFIG``, else ``./settings.toml`` if it exists, else the system file."""
    env = os.environ if environ is None else environ
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    local = (cwd or Path.cwd()) / "settings.toml"
    return local if local.exists() else SYSTEM_CONFIG


def load_toml(path: Path) -> dict[str, Any]:
    """Read a TOML file; syntax errors name the file, line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc.__class__.__name__}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: TOML syntax error: {exc}") from None


def load_config(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Build and validate the settings once. Errors raise ConfigError (exit 2)."""
    env = dict(os.environ if environ is None else environ)
    cfg_path = (path or default_config_path(env)).resolve()
    if path is None and not cfg_path.exists():
        raise ConfigError(
            f"{cfg_path}: file not found (no ./settings.toml here; give "
            f"--config PATH or set ${CONFIG_ENV})"
        )
    data = load_toml(cfg_path)
    # pydantic-settings reads os.environ itself; hand it exactly the variables meant for us.
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update({k: v for k, v in env.items() if k.upper().startswith(ENV_PREFIX)})
        os.environ.pop(CONFIG_ENV, None)
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(cfg_path, exc)) from None
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return Config(settings=settings, path=cfg_path)


def format_validation_error(path: Path, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        env_name = ENV_PREFIX + "__".join(str(p) for p in err["loc"]).upper()
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{path}: {key}: {msg} (or environment {env_name})")
    return "\n".join(lines)


@dataclass(frozen=True)
class Credentials:
    client_id: str
    client_secret: str

    def __repr__(self) -> str:  # never print the secret, even in a traceback
        return f"Credentials(client_id={self.client_id!r}, client_secret='***')"


def load_credentials(config: Config, environ: Mapping[str, str] | None = None) -> Credentials:
    """Secrets come from the environment or ``$CREDENTIALS_DIRECTORY``, never settings."""
    if config.sandbox_mode:
        return Credentials(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
    env = os.environ if environ is None else environ
    values: dict[str, str] = {}
    cred_dir = env.get("CREDENTIALS_DIRECTORY")
    for name in ("LAPOR_CLIENT_ID", "LAPOR_CLIENT_SECRET"):
        if env.get(name):
            values[name] = env[name]
        elif cred_dir and (Path(cred_dir) / name).is_file():
            values[name] = (Path(cred_dir) / name).read_text(encoding="utf-8").strip()
    missing = [n for n in ("LAPOR_CLIENT_ID", "LAPOR_CLIENT_SECRET") if not values.get(n)]
    if missing:
        raise ConfigError(
            f"{config.path}: lapor.base_url is a real LAPOR! but {', '.join(missing)} "
            "is not set (environment, or a file in $CREDENTIALS_DIRECTORY)"
        )
    return Credentials(values["LAPOR_CLIENT_ID"], values["LAPOR_CLIENT_SECRET"])


def load_redmine_key(environ: Mapping[str, str] | None = None) -> str:
    """``REDMINE_API_KEY`` from the environment or ``$CREDENTIALS_DIRECTORY``."""
    env = os.environ if environ is None else environ
    if env.get("REDMINE_API_KEY"):
        return env["REDMINE_API_KEY"].strip()
    cred_dir = env.get("CREDENTIALS_DIRECTORY")
    if cred_dir and (Path(cred_dir) / "REDMINE_API_KEY").is_file():
        value = (Path(cred_dir) / "REDMINE_API_KEY").read_text(encoding="utf-8").strip()
        if value:
            return value
    raise ConfigError(
        'tracker.kind is "redmine" but REDMINE_API_KEY is not set '
        "(environment, or a file in $CREDENTIALS_DIRECTORY)"
    )


def load_smtp_password(environ: Mapping[str, str] | None = None) -> str | None:
    """``SMTP_PASSWORD`` from the environment or ``$CREDENTIALS_DIRECTORY``; None when not
    given (a server that needs no login)."""
    env = os.environ if environ is None else environ
    if env.get("SMTP_PASSWORD"):
        return env["SMTP_PASSWORD"]
    cred_dir = env.get("CREDENTIALS_DIRECTORY")
    if cred_dir and (Path(cred_dir) / "SMTP_PASSWORD").is_file():
        return (Path(cred_dir) / "SMTP_PASSWORD").read_text(encoding="utf-8").strip() or None
    return None
