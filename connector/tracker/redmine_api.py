"""A small async client for Redmine's REST API (Redmine 5), for the Redmine tracker.

The client never opens sockets itself when a transport is passed in (tests hand it an
``httpx.MockTransport`` or nothing at all for a real loopback Redmine). It makes ONE
attempt per call and never retries: a retried POST after a timeout could create a
second issue, so backing off and retrying belongs to the tracker worker, whose creates
are find-or-create.

Redmine's REST API is lenient in ways that would hide failures, and the client guards
against each (see docs/redmine-port-plan.md):

- an unknown or unfilterable ``cf_N`` filter is silently ignored and the query returns
  every issue: results are re-checked against the tracking id;
- the short filter form ``cf_N=<value>`` parses operators (``~x`` means "contains",
  ``a|b`` means "a or b"): the explicit ``f[]/op[]/v[]`` form is used;
- a status the workflow does not allow, a project that does not exist, a read-only
  field: all answered 204 and silently dropped: ``update_issue`` re-reads the issue
  and raises ``RedmineRefused`` naming what was not applied;
- a request without a valid key is served as the anonymous user (200, nothing
  visible): the key is always sent and ``current_user`` is the first call.

Errors carry the issue id or tracking id and Redmine's validation messages (field-level
texts such as "Subject cannot be blank"), never complaint content.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, TypedDict

import httpx

from connector import __version__
from connector.errors import (
    MALFORMED,
    ConfigError,
    RedmineAuthRefused,
    RedmineRefused,
    RedmineUnavailable,
    mapped,
)
from connector.settings import is_loopback

API_KEY_HEADER = "X-Redmine-API-Key"
PAGE_LIMIT = 100  # Redmine's own maximum for list calls
MAX_PAGES = 200  # a runaway listing stops (and says so) instead of reading forever
MAX_ERROR_TEXT = 200  # per validation message

# Query parameters: a mapping, or pairs where a name repeats (Redmine's ``f[]``).
# Decoded JSON from Redmine, not yet checked: ``_list``, ``_named``, ``_issue`` check it.
JSON = Any
Pairs = list[tuple[str, str | int | float | bool | None]]
Params = Mapping[str, str] | Pairs


class IssueChanges(TypedDict, total=False):
    """The keyword arguments of ``RedmineClient.update_issue``, built up by a caller."""

    status: str
    project: str
    notes: str
    private_notes: bool
    is_private: bool
    due_date: date
    subject: str
    description: str


# -- plain data ---------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    id: int
    login: str
    admin: bool


@dataclass(frozen=True)
class Named:
    """A tracker, an issue status (``is_closed``) or a project (``identifier``)."""

    id: int
    name: str
    is_closed: bool = False
    identifier: str | None = None


@dataclass(frozen=True)
class CustomField:
    id: int
    name: str
    customized_type: str
    field_format: str
    is_filter: bool
    tracker_ids: tuple[int, ...]


@dataclass(frozen=True)
class JournalDetail:
    property: str  # attr | cf | attachment | relation
    name: str  # e.g. status_id, project_id, or the custom field id
    old_value: str | None
    new_value: str | None


@dataclass(frozen=True)
class Journal:
    id: int
    user_id: int
    notes: str
    private_notes: bool
    created_on: datetime
    details: tuple[JournalDetail, ...]

    def changed(self, attr: str) -> JournalDetail | None:
        return next((d for d in self.details if d.property == "attr" and d.name == attr), None)


@dataclass(frozen=True)
class Issue:
    id: int
    project_id: int
    tracker_id: int
    status_id: int
    status_closed: bool
    is_private: bool
    subject: str
    due_date: date | None
    updated_on: datetime
    custom_fields: dict[int, object]  # as Redmine gave them
    journals: tuple[Journal, ...] = field(default=())
    description: str | None = None
    start_date: date | None = None

    def custom(self, field_id: int) -> str | None:
        """A text field's value (the tracking id); None when unset or not a text."""
        value = self.custom_fields.get(field_id)
        return value if isinstance(value, str) else None


# -- the client ---------------------------------------------------------------------------


def check_url(url: str) -> httpx.URL:
    """``https://`` anywhere, plain ``http://`` only to a loopback host."""
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(f"tracker.redmine.url: must be an http(s) URL, got {url!r}")
    if parsed.scheme == "http" and not is_loopback(parsed.host):
        raise ConfigError(
            "tracker.redmine.url: plain http:// is only allowed for loopback hosts; "
            "use https:// (TLS verification is always on)"
        )
    return parsed


class RedmineClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        tracking_field_id: int,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_s: float = 30.0,
        max_response_bytes: int = 8 * 1024 * 1024,
    ):
        if not api_key:
            raise ConfigError("REDMINE_API_KEY: empty")
        self.base_url = check_url(base_url)
        self.tracking_field_id = tracking_field_id
        self._max_bytes = max_response_bytes
        self._http = httpx.AsyncClient(
            base_url=str(self.base_url).rstrip("/"),
            transport=transport,
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=False,  # a redirect would carry the key elsewhere
            verify=True,
            # No proxy for plain http (loopback only): it would see the API key in clear.
            trust_env=self.base_url.scheme == "https" and not is_loopback(self.base_url.host),
            headers={
                API_KEY_HEADER: api_key,
                "User-Agent": f"mahulu-lapor-connector/{__version__}",
                "Accept": "application/json",
            },
        )
        self._trackers: dict[str, Named] | None = None
        self._statuses: dict[str, Named] | None = None

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> RedmineClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- the request machinery -----------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        params: Params | None = None,
        body: Mapping[str, object] | None = None,
    ) -> JSON:
        """One attempt; the decoded JSON body (``None`` for an empty answer): unchecked
        JSON, which the ``_issue``/``_list``/``_named`` readers check."""
        with mapped(
            {
                httpx.TransportError: lambda exc: RedmineUnavailable(  # timeouts too
                    f"Redmine unavailable during {what}: {exc.__class__.__name__}"
                )
            }
        ):
            async with self._http.stream(method, path, params=params, json=body) as resp:
                raw = await self._read_capped(resp, what)
        status = resp.status_code
        if 200 <= status < 300:
            if not raw.strip():
                return None
            try:
                return json.loads(raw)
            except ValueError:
                raise RedmineUnavailable(
                    f"Redmine answered {what} with malformed JSON", status=status
                ) from None
        if status in (408, 429) or status >= 500:
            raise RedmineUnavailable(f"Redmine answered {what} with HTTP {status}", status=status)
        if status == 401:
            raise RedmineAuthRefused(
                "Redmine refused the API key (HTTP 401): check REDMINE_API_KEY and that "
                "the REST API is enabled (Administration > Settings > API)"
            )
        if 300 <= status < 400:
            raise RedmineRefused(
                what,
                "redirected",
                status=status,
                errors=["check tracker.redmine.url (redirects are not followed)"],
            )
        reason = {403: "forbidden", 404: "not_found", 422: "invalid"}.get(status, f"http_{status}")
        raise RedmineRefused(what, reason, status=status, errors=_errors(raw))

    async def _read_capped(self, resp: httpx.Response, what: str) -> bytes:
        declared = resp.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            raise RedmineRefused(what, "response_too_large", status=resp.status_code)
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.aiter_bytes():
            size += len(chunk)
            if size > self._max_bytes:
                raise RedmineRefused(what, "response_too_large", status=resp.status_code)
            chunks.append(chunk)
        return b"".join(chunks)

    # -- lookups ------------------------------------------------------------------------

    async def current_user(self) -> User:
        doc = await self._call("GET", "/users/current.json", "current user")
        with mapped(
            {MALFORMED: lambda _: RedmineUnavailable("Redmine answered current user malformed")}
        ):
            u = doc["user"]
            return User(int(u["id"]), str(u["login"]), bool(u.get("admin", False)))

    async def trackers(self) -> list[Named]:
        doc = await self._call("GET", "/trackers.json", "trackers")
        return [_named(t) for t in _list(doc, "trackers")]

    async def statuses(self) -> list[Named]:
        doc = await self._call("GET", "/issue_statuses.json", "issue statuses")
        return [_named(s) for s in _list(doc, "issue_statuses")]

    async def custom_fields(self) -> list[CustomField]:
        """All custom fields. Redmine answers 403 unless the key's user is an admin."""
        doc = await self._call("GET", "/custom_fields.json", "custom fields")
        out = []
        for c in _list(doc, "custom_fields"):
            with mapped(
                {
                    MALFORMED: lambda _: RedmineUnavailable(
                        "Redmine answered custom fields malformed"
                    )
                }
            ):
                out.append(
                    CustomField(
                        int(c["id"]),
                        str(c["name"]),
                        str(c.get("customized_type", "")),
                        str(c.get("field_format", "")),
                        bool(c.get("is_filter", False)),
                        tuple(int(t["id"]) for t in c.get("trackers") or ()),
                    )
                )
        return out

    async def project(self, identifier: str) -> Named | None:
        """The project, or ``None`` when it does not exist (or the user cannot see it)."""
        try:
            doc = await self._call(
                "GET", f"/projects/{_segment(identifier)}.json", f"project {identifier}"
            )
        except RedmineRefused as exc:
            if exc.reason in ("not_found", "forbidden"):
                return None
            raise
        with mapped(
            {MALFORMED: lambda _: RedmineUnavailable("Redmine answered project malformed")}
        ):
            return _named(doc["project"])

    async def tracker_id(self, name: str, *, refresh: bool = False) -> int:
        if self._trackers is None or refresh:
            self._trackers = {t.name: t for t in await self.trackers()}
        found = self._trackers.get(name)
        if found is None:
            raise RedmineRefused(
                f"tracker {name!r}",
                "unknown_tracker",
                errors=["no Redmine tracker of that name (mappings/redmine.toml)"],
            )
        return found.id

    async def status(self, name: str, *, refresh: bool = False) -> Named:
        if self._statuses is None or refresh:
            self._statuses = {s.name: s for s in await self.statuses()}
        found = self._statuses.get(name)
        if found is None:
            raise RedmineRefused(
                f"status {name!r}",
                "unknown_status",
                errors=["no Redmine status of that name (mappings/redmine.toml)"],
            )
        return found

    # -- issues -------------------------------------------------------------------------

    async def issue(self, issue_id: int, *, journals: bool = False) -> Issue | None:
        params = {"include": "journals"} if journals else None
        try:
            doc = await self._call(
                "GET", f"/issues/{int(issue_id)}.json", f"issue #{issue_id}", params=params
            )
        except RedmineRefused as exc:
            if exc.reason == "not_found":
                return None
            raise
        return _issue(doc, "issue")

    async def find_issues(self, tracking_id: str) -> list[Issue]:
        """Issues whose tracking-id field equals ``tracking_id`` exactly, in every project
        the user sees, open or closed, lowest id first."""
        cf = f"cf_{self.tracking_field_id}"
        params: Pairs = [
            ("set_filter", "1"),
            ("f[]", "status_id"),
            ("op[status_id]", "*"),
            ("f[]", cf),
            (f"op[{cf}]", "="),
            (f"v[{cf}][]", tracking_id),
            ("sort", "id"),
            ("limit", str(PAGE_LIMIT)),
        ]
        doc = await self._call(
            "GET", "/issues.json", f"find tracking id {tracking_id}", params=params
        )
        found = [_issue(raw, None) for raw in _list(doc, "issues")]
        # An unknown or unfilterable field makes Redmine ignore the filter: check each one.
        return sorted(
            (i for i in found if i.custom(self.tracking_field_id) == tracking_id),
            key=lambda i: i.id,
        )

    async def find_issue(self, tracking_id: str) -> Issue | None:
        found = await self.find_issues(tracking_id)
        return found[0] if found else None

    async def create_issue(
        self,
        *,
        project: str,
        tracker: str,
        status: str,
        subject: str,
        description: str,
        tracking_id: str,
        due_date: date | None = None,
        is_private: bool = False,
        start_date: date | None = None,
    ) -> Issue:
        """Create one issue (NOT find-or-create: the caller looks first)."""
        what = f"create issue for tracking id {tracking_id}"
        body: dict[str, object] = {
            "project_id": project,
            "tracker_id": await self.tracker_id(tracker),
            "status_id": (await self.status(status)).id,
            "subject": subject,
            "description": description,
            "is_private": is_private,
            "custom_fields": [{"id": self.tracking_field_id, "value": tracking_id}],
        }
        if due_date is not None:
            body["due_date"] = due_date.isoformat()
        if start_date is not None:
            # Redmine's default start is today: a due date before it is refused (422).
            body["start_date"] = start_date.isoformat()
        doc = await self._call("POST", "/issues.json", what, body={"issue": body})
        created = _issue(doc, "issue")
        if created.custom(self.tracking_field_id) != tracking_id:
            # Issue exists but find-by-tracking-id cannot see it: a person must fix the field.
            raise RedmineRefused(
                what,
                "tracking_field_not_set",
                errors=[
                    f"issue #{created.id} was created without custom field "
                    f"{self.tracking_field_id}: enable it for this tracker and project"
                ],
            )
        return created

    async def update_issue(
        self,
        issue_id: int,
        *,
        status: str | None = None,
        project: str | None = None,
        notes: str | None = None,
        private_notes: bool = False,
        is_private: bool | None = None,
        due_date: date | None = None,
        subject: str | None = None,
        description: str | None = None,
    ) -> Issue:
        """Apply a change and read the issue back; raises ``RedmineRefused`` when Redmine
        dropped part of it (a workflow forbids the status, the project does not exist)."""
        what = f"update of issue #{issue_id}"
        body: dict[str, object] = {}
        want_status = await self.status(status) if status is not None else None
        want_project = await self.project(project) if project is not None else None
        if project is not None and want_project is None:
            raise RedmineRefused(
                what,
                "project_not_found",
                errors=[f"no project {project!r} visible to the connector"],
            )
        if want_status is not None:
            body["status_id"] = want_status.id
        if want_project is not None:
            body["project_id"] = want_project.id
        if notes:
            body["notes"] = notes
            body["private_notes"] = private_notes
        if is_private is not None:
            body["is_private"] = is_private
        if due_date is not None:
            body["due_date"] = due_date.isoformat()
        if subject is not None:
            body["subject"] = subject
        if description is not None:
            body["description"] = description
        if body:
            await self._call("PUT", f"/issues/{int(issue_id)}.json", what, body={"issue": body})
        after = await self.issue(issue_id)
        if after is None:
            raise RedmineRefused(what, "not_found", status=404)
        dropped = []
        if want_status is not None and after.status_id != want_status.id:
            dropped.append(f"status {want_status.name!r} not applied (workflow or permissions)")
        if want_project is not None and after.project_id != want_project.id:
            dropped.append(f"move to project {project!r} not applied (permissions)")
        if is_private is not None and after.is_private != is_private:
            dropped.append("privacy not applied (permission set_issues_private)")
        if dropped:
            raise RedmineRefused(what, "ignored", errors=dropped)
        return after

    async def updated_since(
        self, since: datetime, *, project: str | None = None, journals: bool = True
    ) -> list[Issue]:
        """Issues carrying a tracking id and updated at or after ``since`` (Redmine keeps
        whole seconds: callers overlap and de-duplicate by journal id), oldest update
        first, each with its journals (the list call ignores ``include=journals``, so each
        issue is read on its own)."""
        cf = f"cf_{self.tracking_field_id}"
        stamp = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        base: Pairs = [
            ("set_filter", "1"),
            ("f[]", "status_id"),
            ("op[status_id]", "*"),
            ("f[]", "updated_on"),
            ("op[updated_on]", ">="),
            ("v[updated_on][]", stamp),
            ("f[]", cf),
            (f"op[{cf}]", "*"),
            ("sort", "updated_on,id"),
            ("limit", str(PAGE_LIMIT)),
        ]
        if project is not None:
            base.append(("project_id", project))
        seen: dict[int, Issue] = {}
        offset = 0
        for _ in range(MAX_PAGES):
            doc = await self._call(
                "GET",
                "/issues.json",
                "issues updated since",
                params=[*base, ("offset", str(offset))],
            )
            page = [_issue(raw, None) for raw in _list(doc, "issues")]
            for i in page:
                seen.setdefault(i.id, i)
            total = doc.get("total_count") if isinstance(doc, dict) else None
            offset += len(page)
            if not page or not isinstance(total, int) or offset >= total:
                break
        else:
            raise RedmineUnavailable("Redmine listing of updated issues did not end")
        issues = [i for i in seen.values() if i.custom(self.tracking_field_id) is not None]
        if not journals:
            return issues
        out = []
        for i in issues:
            full = await self.issue(i.id, journals=True)
            if full is not None:  # deleted meanwhile
                out.append(full)
        return out


# -- parsing ------------------------------------------------------------------------------


def _segment(identifier: str) -> str:
    if not identifier or "/" in identifier or identifier in (".", ".."):
        raise RedmineRefused(f"project {identifier!r}", "bad_identifier")
    return identifier


def _errors(raw: bytes) -> list[str]:
    try:
        doc = json.loads(raw)
    except ValueError:
        return []
    errs = doc.get("errors") if isinstance(doc, dict) else None
    if isinstance(errs, list):
        return [str(e)[:MAX_ERROR_TEXT] for e in errs[:10]]
    return []


def _list(doc: JSON, key: str) -> list[dict[str, JSON]]:
    items = doc.get(key) if isinstance(doc, dict) else None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise RedmineUnavailable(f"Redmine answered {key} malformed")
    return items


def _named(raw: JSON) -> Named:
    with mapped(
        {MALFORMED: lambda _: RedmineUnavailable("Redmine answered a malformed name/id pair")}
    ):
        return Named(
            int(raw["id"]),
            str(raw["name"]),
            bool(raw.get("is_closed", False)),
            raw.get("identifier"),
        )


def _time(value: JSON) -> datetime:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _issue(doc: JSON, key: str | None) -> Issue:
    with mapped({MALFORMED: lambda _: RedmineUnavailable("Redmine answered an issue malformed")}):
        raw = doc[key] if key is not None else doc
        due = raw.get("due_date")
        return Issue(
            id=int(raw["id"]),
            project_id=int(raw["project"]["id"]),
            tracker_id=int(raw["tracker"]["id"]),
            status_id=int(raw["status"]["id"]),
            status_closed=bool(raw["status"].get("is_closed", False)),
            is_private=bool(raw.get("is_private", False)),
            subject=str(raw.get("subject", "")),
            due_date=date.fromisoformat(due) if due else None,
            updated_on=_time(raw["updated_on"]),
            custom_fields={int(c["id"]): c.get("value") for c in raw.get("custom_fields") or ()},
            journals=tuple(_journal(j) for j in raw.get("journals") or ()),
            # None: the answer did not carry the field (never read as an empty text).
            description=None if "description" not in raw else str(raw["description"] or ""),
            start_date=date.fromisoformat(raw["start_date"]) if raw.get("start_date") else None,
        )


def _journal(raw: dict[str, JSON]) -> Journal:
    return Journal(
        id=int(raw["id"]),
        user_id=int(raw["user"]["id"]),
        notes=str(raw.get("notes") or ""),
        private_notes=bool(raw.get("private_notes", False)),
        created_on=_time(raw["created_on"]),
        details=tuple(
            JournalDetail(
                str(d.get("property", "")),
                str(d.get("name", "")),
                d.get("old_value"),
                d.get("new_value"),
            )
            for d in raw.get("details") or ()
        ),
    )
