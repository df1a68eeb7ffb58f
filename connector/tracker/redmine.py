"""Redmine 5 as the local tracking system: the tracker port over its REST API.

One issue per complaint, found by the tracking id in a custom field. Everything the
connector writes carries a marker line without content (``[LAPOR! ...]``): a repeated
apply (after a kill, a timeout) first looks for its marker on the issue and does not
write twice. Officer changes are the journals of other users; the connector's own
user's journals are dropped (echo suppression). Redmine's quirks are handled in
``redmine_api.py`` (see docs/redmine-port-plan.md).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import Connection, func, select

from connector import privacy
from connector.domain import ChangeId
from connector.mappings import Mappings
from connector.privacy import PrivacyChange
from connector.timeutil import human, wita_date
from connector.tracker.base import NewMessage, NewTicket, OfficerChange, TicketUpdate
from connector.tracker.port import (
    CREATE,
    MESSAGE,
    UPDATE,
    Intent,
    Reporting,
    TrackerPort,
)
from connector.tracker.redmine_api import (
    Issue,
    IssueChanges,
    Journal,
    RedmineClient,
    RedmineRefused,
)
from connector.tracker.redmine_mapping import RedmineMapping

log = structlog.get_logger("connector.redmine")
# Redmine keeps whole seconds and a commit is not instantaneous: re-read this far back and
# de-duplicate by journal id (the outbox is idempotent by change id).
OVERLAP = timedelta(seconds=60)
SUBJECT_MAX = 255
REPORTER = "Pelapor: "


def marker(key: str) -> str:
    return f"[LAPOR! {key}]"


# A "<" or "&" that could start a tag or an entity: a zero-width space after it.
_TAG_OR_ENTITY = re.compile(r"([<&])(?=[A-Za-z/!?#])")
ZWSP = "\u200b"


def _pre_text(text: str) -> str:
    # Textile escapes a <pre>'s content itself (entities of ours would show as "&lt;");
    # CommonMark keeps it as HTML. An invisible space after a "<" or "&" that could start
    # a tag or an entity keeps it literal in both, and the text from closing the block.
    return _TAG_OR_ENTITY.sub(r"\1" + ZWSP, text)


def _pre(text: str) -> str:
    # Complaint text is shown as typed, inside <pre>.
    return "<pre>\n" + _pre_text(text) + "\n</pre>"


# Characters that start Textile or Redmine markup inside a line: images (!url!), links
# ("text":url, bare http://), macros ({{include(…)}}), wiki links ([[…]]), issue refs (#1),
# mentions (@user), spans and tables. As numeric entities they show as typed, inert.
# CommonMark turns entities back into characters before Redmine looks for its links: an
# invisible space before "#" and "@" keeps issue refs, mentions and e-mail links from forming.
_TEXTILE = {c: f"&#{ord(c)};" for c in '&<>"!{}[]#*_@%|^~=:'}
_TEXTILE.update({c: f"&#8203;&#{ord(c)};" for c in "#@"})


def _inline(value: object) -> str:
    """A value from LAPOR! on one line of an issue's Textile, shown as typed: one line
    (a newline could start a block such as ``h1.``), every markup character escaped."""
    return "".join(_TEXTILE.get(c, c) for c in " ".join(str(value).split()))


def describe(t: NewTicket) -> str:
    """The issue's description: the complaint text, then facts one per line, then the
    marker. The reporter's contact only when not anonim."""
    lines = [_pre(t.body), ""]
    if t.category:
        lines.append(f"Kategori: {_inline(t.category)}")
    lines.append(f"Kanal: {_inline(t.channel)}")
    if t.location:
        loc = ", ".join(
            _inline(t.location[k])
            for k in ("village", "district", "regency", "province")
            if t.location.get(k)
        )
        if loc:
            lines.append(f"Lokasi: {loc}")
    lines.append(f"Diterima di LAPOR!: {human(t.submitted_at)}")
    if t.confidential:
        lines.append("RAHASIA: laporan rahasia, isu privat.")
    if not t.anonymous and t.reporter:
        contact = " / ".join(
            _inline(v)
            for v in (t.reporter.get("name"), t.reporter.get("email"), t.reporter.get("phone"))
            if v
        )
        if contact:
            lines.append(REPORTER + contact)
    lines += ["", marker(t.tracking_id)]
    return "\n".join(lines)


def redescribe(current: str, body: str | None, anonymous: bool) -> str:
    """The description after LAPOR! edited the text or made the complaint anonim: the
    text block replaced, the reporter's line and every occurrence of its values gone."""
    head, sep, tail = current.partition("\n</pre>")
    if body is not None:
        head, tail = _pre(body)[: -len("\n</pre>")], tail
        sep = "\n</pre>"
    text = head + sep + tail
    if anonymous:
        out = []
        identity: list[str] = []
        for line in text.split("\n"):
            if line.startswith(REPORTER):
                # As written on the line (escaped), as typed, and as in the text block.
                for v in line[len(REPORTER) :].split(" / "):
                    typed = html.unescape(v.strip()).replace(ZWSP, "")
                    identity += [
                        form
                        for form in (v.strip(), typed, _pre_text(typed))
                        if len(form) >= privacy.MIN_IDENTITY
                    ]
                continue
            out.append(line)
        text = "\n".join(out)
        text = privacy.scrub(text, identity)
    return text


class RedmineTracker(TrackerPort):
    kind = "redmine"

    def __init__(
        self,
        make_client: Callable[[], RedmineClient],
        mapping: RedmineMapping,
        default_project: str,
        mappings: Callable[[], Mappings],
        base_url: str,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        overlap: timedelta = OVERLAP,
    ):
        self._make_client = make_client
        self._client: RedmineClient | None = None
        self.mapping = mapping
        self.default_project = default_project
        self.mappings = mappings
        self.base_url = base_url.rstrip("/")
        self.now = now
        self.overlap = overlap
        self._me: int | None = None
        self._status_names: dict[int, str] | None = None

    # -- plumbing -------------------------------------------------------------------------

    def client(self) -> RedmineClient:
        if self._client is None:  # made on first use: `status` needs no key or network
            self._client = self._make_client()
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def me(self) -> int:
        if self._me is None:
            self._me = (await self.client().current_user()).id
        return self._me

    def project_of(self, agency: str) -> str:
        try:
            found = self.mappings().agency(agency)
        except Exception:  # no valid mapping loaded: the default project
            found = None
        return found.redmine_project if found and found.redmine_project else self.default_project

    def issue_url(self, ref: str) -> str | None:
        return f"{self.base_url}/issues/{ref}" if ref else None

    def reporting(self) -> Reporting:
        return _Reporting()

    # -- applying intents ----------------------------------------------------------------

    async def find(self, tracking_id: str) -> str | None:
        found = await self.client().find_issue(tracking_id)
        return None if found is None else str(found.id)

    async def apply(self, intent: Intent) -> str:
        c = self.client()
        await self.me()  # also checks the key before anything is written
        issue = None
        if intent.issue_ref:
            issue = await c.issue(int(intent.issue_ref))
        if issue is None:
            issue = await c.find_issue(intent.tracking_id)
        if intent.kind == CREATE:
            if issue is None:
                t = intent.ticket()
                due = None if t.due_at is None else wita_date(t.due_at)
                start = wita_date(t.submitted_at)
                issue = await c.create_issue(
                    project=self.project_of(t.agency),
                    tracker=self.mapping.tracker,
                    status=self.mapping.to_redmine[t.status],
                    subject=_subject(t.title),
                    description=describe(t),
                    tracking_id=t.tracking_id,
                    due_date=due,
                    start_date=start if due is None else min(start, due),
                    is_private=t.confidential,
                )
                log.info("redmine_issue_created", tracking_id=t.tracking_id, issue=issue.id)
            if intent.ticket().confidential and not issue.is_private:
                # Redmine drops is_private silently without the permission: read back, so
                # a rahasia complaint never stays a public issue unnoticed.
                await c.update_issue(issue.id, is_private=True)
            return str(issue.id)
        if issue is None:
            raise RedmineRefused(
                f"{intent.kind} for tracking id {intent.tracking_id}",
                "issue_not_found",
                errors=["no issue carries this tracking id"],
            )
        if intent.kind == UPDATE:
            await self._update(issue, intent, intent.update())
        elif intent.kind == MESSAGE:
            await self._message(issue, intent, intent.message())
        return str(issue.id)

    async def _already(self, issue: Issue, intent: Intent, key: str) -> bool:
        """Whether an earlier try already wrote this marker (only after one may have)."""
        if intent.attempts <= 1:
            return False
        full = await self.client().issue(issue.id, journals=True)
        me = await self.me()
        return full is not None and any(
            j.user_id == me and j.notes.rstrip().endswith(marker(key)) for j in full.journals
        )

    async def _update(self, issue: Issue, intent: Intent, u: TicketUpdate) -> None:
        kw: IssueChanges = {}
        notes: list[str] = []
        if u.status is not None:
            kw["status"] = self.mapping.to_redmine[u.status]
            if u.reason:
                notes.append(f"Status dari LAPOR!: {u.lapor_status} ({u.reason}).")
        if u.agency is not None:
            kw["project"] = self.project_of(u.agency)
        if u.due_at is not None:
            due = wita_date(u.due_at)
            if due != issue.due_date and (issue.start_date is None or due >= issue.start_date):
                kw["due_date"] = due
        if PrivacyChange.of(
            None, u.confidential, was_anonymous=False, was_confidential=issue.is_private
        ).restrict:
            kw["is_private"] = True
            notes.append("Laporan kini rahasia di LAPOR!; isu dijadikan privat.")
        if u.title is not None:
            kw["subject"] = _subject(u.title)
        if u.body is not None or u.anonymous:
            # ``issue`` was read by apply() just now (one issue or the search: both carry
            # the description in Redmine), so it is fetched again only if it lacks one.
            current = issue.description
            if current is None:
                full = await self.client().issue(issue.id)
                current = (full.description if full is not None else None) or ""
            # An issue keeps no anonim flag: the decision always applies, and removes the
            # reporter's line (this tracker's copy of the identity) when there is one.
            forget = PrivacyChange.of(
                u.anonymous, None, was_anonymous=False, was_confidential=False
            ).forget_reporter
            new = redescribe(current, u.body, forget)
            if new != current:
                kw["description"] = new
            if forget and REPORTER in current:
                notes.append("Laporan kini anonim di LAPOR!; identitas pelapor dihapus.")
            if u.body is not None:
                notes.append("Judul/isi laporan diubah di LAPOR!; deskripsi diganti.")
        key = f"u{intent.id}"
        if notes and not await self._already(issue, intent, key):
            kw["notes"] = "\n".join(notes) + "\n\n" + marker(key)
        await self.client().update_issue(issue.id, **kw)

    async def _message(self, issue: Issue, intent: Intent, m: NewMessage) -> None:
        key = f"tl:{m.followup_id}" if m.followup_id else f"m{intent.id}"
        if await self._already(issue, intent, key):
            return
        text = f"*{_inline(m.author)}* ({human(m.at)}):\n\n{_pre(m.text)}\n\n{marker(key)}"
        await self.client().update_issue(issue.id, notes=text, private_notes=False)

    # -- officer changes -----------------------------------------------------------------

    async def _status_local(self, status_id: str | int | None) -> str | None:
        if status_id is None:
            return None
        if self._status_names is None or int(status_id) not in self._status_names:
            self._status_names = {s.id: s.name for s in await self.client().statuses()}
        name = self._status_names.get(int(status_id))
        return None if name is None else self.mapping.local_status(name)

    async def changes_since(
        self, cursor: str | None, limit: int = 500
    ) -> tuple[list[OfficerChange], str | None]:
        me = await self.me()
        since = datetime.fromisoformat(cursor) if cursor else self.now() - self.overlap
        issues = await self.client().updated_since(since - self.overlap)
        high = since
        out: list[tuple[datetime, int, OfficerChange]] = []
        field_id = self.client().tracking_field_id
        for issue in issues:
            high = max(high, issue.updated_on)
            tid = issue.custom(field_id)
            if not tid:
                continue
            journals = sorted(issue.journals, key=lambda j: j.id)
            for j in journals:
                if j.created_on < since - self.overlap or j.user_id == me:
                    continue  # already read, or the connector's own (an echo)
                reply = None if j.private_notes else (j.notes.strip() or None)
                detail = j.changed("status_id")
                status = await self._status_local(detail.new_value) if detail else None
                if reply is None and status is None:
                    continue  # a private note, a move, an edit: nothing for LAPOR!
                after = await self._status_after(issue, journals, j)
                out.append(
                    (
                        j.created_on,
                        j.id,
                        OfficerChange(
                            change_id=ChangeId.make("redmine", j.id),
                            ticket_ref=str(issue.id),
                            tracking_id=str(tid),
                            status=status,
                            ticket_status=after or "in_progress",
                            reply=reply,
                            at=j.created_on,
                        ),
                    )
                )
        out.sort(key=lambda x: (x[0], x[1]))
        return [c for _, _, c in out], high.isoformat()

    async def _status_after(self, issue: Issue, journals: list[Journal], j: Journal) -> str | None:
        """The issue's local status right after journal ``j``."""
        last = None
        for k in journals:
            d = k.changed("status_id")
            if d is None:
                continue
            if k.id <= j.id:
                last = d.new_value
            elif last is None:
                last = d.old_value
                break
        return await self._status_local(last if last is not None else issue.status_id)


def _subject(title: str) -> str:
    title = " ".join(title.split()) or "(tanpa judul)"
    return title[:SUBJECT_MAX]


class _Reporting:
    """Counts and overdue from the connector's own facts (Redmine keeps the issues)."""

    def counts(self, conn: Connection) -> list[tuple[str, str, int]]:
        from connector.store.schema import links, tracker_issues

        status = func.coalesce(tracker_issues.c.officer_status, "new")
        q = (
            select(links.c.agency, links.c.closed, status, func.count())
            .outerjoin(tracker_issues, tracker_issues.c.tracking_id == links.c.tracking_id)
            .group_by(links.c.agency, links.c.closed, status)
        )
        out: dict[tuple[str, str], int] = {}
        for agency, closed, s, n in conn.execute(q):
            key = (agency, "closed" if closed else s)
            out[key] = out.get(key, 0) + int(n)
        return sorted((a, s, n) for (a, s), n in out.items())

    def refs(self, conn: Connection, tracking_ids: list[str]) -> dict[str, str]:
        from connector.store import intents as store_intents

        return store_intents.refs(conn, tracking_ids)
