"""The Redmine REST client: security rules and error mapping over an httpx.MockTransport
(always), and its behaviour against a real Redmine 5 when ``LAPOR_TEST_REDMINE_URL`` is
set (``.ci/redmine-start`` starts one)."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from connector.errors import ConfigError, Fatal, RetryLater
from connector.tracker import redmine_mapping
from connector.tracker.redmine_api import (
    API_KEY_HEADER,
    RedmineAuthRefused,
    RedmineClient,
    RedmineRefused,
    RedmineUnavailable,
    check_url,
)

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parent.parent
BASE = "http://127.0.0.1:3000"
KEY = "k" * 40
SECRET_TEXT = "Isi pengaduan RAHASIA dari Budi"


def _issue(
    issue_id: int = 7,
    *,
    status: int = 1,
    project: int = 1,
    tid: str | None = "1001",
    private: bool = False,
) -> dict[str, Any]:
    return {
        "id": issue_id,
        "project": {"id": project, "name": "P"},
        "tracker": {"id": 3, "name": "Support"},
        "status": {"id": status, "name": "S", "is_closed": status == 5},
        "subject": "s",
        "is_private": private,
        "due_date": None,
        "updated_on": "2026-11-28T00:49:31Z",
        "custom_fields": [{"id": 1, "name": "LAPOR tracking id", "value": tid}],
    }


def _client(handler: Callable[[httpx.Request], httpx.Response], **kw: Any) -> RedmineClient:
    return RedmineClient(
        BASE, KEY, tracking_field_id=1, transport=httpx.MockTransport(handler), **kw
    )


# -- the URL rule --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://redmine.mahulukab.go.id",
        "http://127.0.0.1:3000",
        "http://localhost:3000",
        "http://[::1]:3000",
        "http://127.0.0.2",
    ],
)
def test_https_anywhere_http_only_to_loopback(url: str) -> None:
    assert check_url(url).host


@pytest.mark.parametrize(
    "url",
    [
        "http://redmine.mahulukab.go.id",
        "http://10.0.0.5:3000",
        "ftp://127.0.0.1",
        "redmine.local",
        "http://localhost.evil.id",
    ],
)
def test_plain_http_elsewhere_is_refused_naming_the_setting(url: str) -> None:
    with pytest.raises(ConfigError, match=r"tracker\.redmine\.url"):
        RedmineClient(
            url,
            KEY,
            tracking_field_id=1,
            transport=httpx.MockTransport(lambda r: httpx.Response(200)),
        )


def test_an_empty_key_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="REDMINE_API_KEY"):
        RedmineClient(BASE, "", tracking_field_id=1)


# -- the request machinery ---------------------------------------------------------------


async def test_every_request_carries_the_key_and_no_redirect_is_followed() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(302, headers={"Location": "https://elsewhere.example/steal"})

    async with _client(handler) as c:
        with pytest.raises(RedmineRefused, match="redirected") as err:
            await c.current_user()
    assert [r.url.host for r in seen] == ["127.0.0.1"]
    assert seen[0].headers[API_KEY_HEADER] == KEY
    assert not isinstance(err.value, RetryLater)


async def test_a_declared_oversized_answer_is_refused_before_reading() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Length": str(10**9)}, content=b"{}")

    async with _client(handler, max_response_bytes=1024) as c:
        with pytest.raises(RedmineRefused, match="response_too_large"):
            await c.trackers()


async def test_a_streamed_oversized_answer_is_cut_off() -> None:
    async def body() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"x" * 512

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body())

    async with _client(handler, max_response_bytes=4096) as c:
        with pytest.raises(RedmineRefused, match="response_too_large"):
            await c.trackers()


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
async def test_server_trouble_is_retry_later(status: int) -> None:
    async with _client(lambda r: httpx.Response(status)) as c:
        with pytest.raises(RedmineUnavailable) as err:
            await c.issue(7)
    assert isinstance(err.value, RetryLater)
    assert err.value.status == status


@pytest.mark.parametrize(
    "exc",
    [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("cut")],
)
async def test_network_failures_and_timeouts_are_retry_later(exc: Exception) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    async with _client(handler) as c:
        with pytest.raises(RedmineUnavailable, match=type(exc).__name__):
            await c.current_user()


async def test_one_attempt_per_call_never_a_second_post() -> None:
    posts = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal posts
        if request.url.path == "/trackers.json":
            return httpx.Response(200, json={"trackers": [{"id": 3, "name": "Support"}]})
        if request.url.path == "/issue_statuses.json":
            return httpx.Response(200, json={"issue_statuses": [{"id": 1, "name": "New"}]})
        posts += 1
        raise httpx.ReadTimeout("slow")

    async with _client(handler) as c:
        with pytest.raises(RedmineUnavailable):
            await c.create_issue(
                project="dinkes",
                tracker="Support",
                status="New",
                subject="s",
                description="d",
                tracking_id="1001",
            )
    assert posts == 1


async def test_a_refused_key_is_fatal() -> None:
    async with _client(lambda r: httpx.Response(401)) as c:
        with pytest.raises(RedmineAuthRefused, match="REDMINE_API_KEY") as err:
            await c.current_user()
    assert isinstance(err.value, Fatal)


async def test_forbidden_names_the_issue_and_is_not_transient() -> None:
    async with _client(lambda r: httpx.Response(403)) as c:
        with pytest.raises(RedmineRefused, match=r"issue #7 \(forbidden\)") as err:
            await c.update_issue(7, notes="x")
    assert err.value.reason == "forbidden" and err.value.status == 403
    assert not isinstance(err.value, RetryLater)


async def test_validation_names_the_tracking_id_and_reason_never_the_content() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/trackers.json":
            return httpx.Response(200, json={"trackers": [{"id": 3, "name": "Support"}]})
        if request.url.path == "/issue_statuses.json":
            return httpx.Response(200, json={"issue_statuses": [{"id": 1, "name": "New"}]})
        return httpx.Response(422, json={"errors": ["Subject cannot be blank"]})

    async with _client(handler) as c:
        with pytest.raises(RedmineRefused) as err:
            await c.create_issue(
                project="dinkes",
                tracker="Support",
                status="New",
                subject="",
                description=SECRET_TEXT,
                tracking_id="1001",
            )
    text = str(err.value)
    assert "1001" in text and "invalid" in text and "Subject cannot be blank" in text
    assert SECRET_TEXT not in text and "Budi" not in text
    assert err.value.errors == ("Subject cannot be blank",)


async def test_malformed_json_is_retry_later() -> None:
    async with _client(lambda r: httpx.Response(200, content=b"<html>proxy</html>")) as c:
        with pytest.raises(RedmineUnavailable, match="malformed"):
            await c.current_user()


async def test_unknown_tracker_name_is_refused_before_any_post() -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return httpx.Response(200, json={"trackers": [{"id": 1, "name": "Bug"}]})

    async with _client(handler) as c:
        with pytest.raises(RedmineRefused, match="unknown_tracker"):
            await c.create_issue(
                project="dinkes",
                tracker="Support",
                status="New",
                subject="s",
                description="d",
                tracking_id="1001",
            )
    assert paths == ["/trackers.json"]


# -- Redmine's leniency, guarded --------------------------------------------------------------


async def test_find_uses_the_explicit_filter_form_and_rechecks_each_result() -> None:
    """An unknown or unfilterable cf_N is ignored by Redmine (every issue comes back), and
    the short form cf_N=~x would mean "contains"."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            json={
                "issues": [
                    _issue(9, tid="~10|11"),
                    _issue(3, tid="10"),
                    _issue(4, tid=None),
                    _issue(2, tid="~10|11"),
                ],
                "total_count": 4,
            },
        )

    async with _client(handler) as c:
        found = await c.find_issues("~10|11")
    assert [i.id for i in found] == [2, 9]
    params = seen[0].url.params
    assert params.get_list("f[]") == ["status_id", "cf_1"]
    assert params["op[cf_1]"] == "=" and params["v[cf_1][]"] == "~10|11"
    assert params["op[status_id]"] == "*"  # closed issues too
    assert "cf_1" not in params  # never the short form


async def test_an_update_redmine_silently_dropped_is_refused_by_name() -> None:
    """Redmine answers 204 to a status its workflow does not allow, and leaves it."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/issue_statuses.json":
            return httpx.Response(
                200,
                json={
                    "issue_statuses": [{"id": 1, "name": "New"}, {"id": 2, "name": "In Progress"}]
                },
            )
        if request.method == "PUT":
            assert json.loads(request.content)["issue"]["status_id"] == 2
            return httpx.Response(204)
        return httpx.Response(200, json={"issue": _issue(7, status=1)})

    async with _client(handler) as c:
        with pytest.raises(RedmineRefused, match=r"In Progress.*not applied") as err:
            await c.update_issue(7, status="In Progress")
    assert err.value.reason == "ignored" and "#7" in str(err.value)


async def test_a_move_to_a_missing_project_is_refused_before_the_put() -> None:
    methods: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        methods.append(request.method)
        return httpx.Response(404)

    async with _client(handler) as c:
        with pytest.raises(RedmineRefused, match="project_not_found"):
            await c.update_issue(7, project="tidak-ada")
    assert methods == ["GET"]


async def test_a_created_issue_without_the_tracking_id_is_refused_naming_it() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/trackers.json":
            return httpx.Response(200, json={"trackers": [{"id": 3, "name": "Support"}]})
        if request.url.path == "/issue_statuses.json":
            return httpx.Response(200, json={"issue_statuses": [{"id": 1, "name": "New"}]})
        return httpx.Response(201, json={"issue": _issue(12, tid=None)})

    async with _client(handler) as c:
        with pytest.raises(RedmineRefused, match=r"tracking_field_not_set.*#12"):
            await c.create_issue(
                project="dinkes",
                tracker="Support",
                status="New",
                subject="s",
                description="d",
                tracking_id="1001",
            )


async def test_updated_since_pages_and_reads_each_issue_with_journals() -> None:
    lists: list[httpx.QueryParams] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/issues.json":
            lists.append(request.url.params)
            offset = int(request.url.params["offset"])
            page = [_issue(offset + 1, tid=str(offset + 1))] if offset < 2 else []
            return httpx.Response(200, json={"issues": page, "total_count": 2})
        issue_id = int(request.url.path.split("/")[-1].split(".")[0])
        assert request.url.params["include"] == "journals"
        doc = _issue(issue_id, tid=str(issue_id))
        doc["journals"] = [
            {
                "id": 100 + issue_id,
                "user": {"id": 5, "name": "x"},
                "notes": "",
                "private_notes": False,
                "created_on": "2026-11-28T00:50:00Z",
                "details": [
                    {"property": "attr", "name": "status_id", "old_value": "1", "new_value": "2"}
                ],
            }
        ]
        return httpx.Response(200, json={"issue": doc})

    since = datetime(2026, 11, 28, 8, 0, 0, 500000, tzinfo=UTC)
    async with _client(handler) as c:
        issues = await c.updated_since(since)
    assert [i.id for i in issues] == [1, 2]
    assert issues[0].journals[0].changed("status_id") is not None
    assert lists[0]["v[updated_on][]"] == "2026-11-28T08:00:00Z"
    assert lists[0]["op[updated_on]"] == ">=" and lists[0]["op[cf_1]"] == "*"
    assert [p["offset"] for p in lists] == ["0", "1"]


# -- against a real Redmine ----------------------------------------------------------------------

from tests.conftest import REDMINE_URL, needs_redmine, redmine_clients  # noqa: E402


@pytest.fixture
async def rm() -> AsyncIterator[tuple[RedmineClient, RedmineClient]]:
    async with redmine_clients() as pair:
        yield pair


def _tid() -> str:
    return str(uuid.uuid4().int % 10**12)


async def _new(c: RedmineClient, tid: str, **kw: Any) -> Any:
    args: dict[str, Any] = {
        "project": "dinkes",
        "tracker": "Support",
        "status": "New",
        "subject": "Jalan rusak",
        "description": "uji",
        "tracking_id": tid,
    }
    return await c.create_issue(**{**args, **kw})


@needs_redmine
async def test_real_own_user_is_told_apart_from_the_officer(rm: Any) -> None:
    connector, officer = rm
    me, other = await connector.current_user(), await officer.current_user()
    assert me.id != other.id and me.admin and not other.admin
    async with RedmineClient(REDMINE_URL or "", "0" * 40, tracking_field_id=1) as bad:
        with pytest.raises(RedmineAuthRefused):
            await bad.current_user()


@needs_redmine
async def test_real_create_then_find_by_tracking_id_across_projects(rm: Any) -> None:
    connector, _ = rm
    tid = _tid()
    created = await _new(connector, tid, project="disdukcapil", due_date=date(2026, 12, 7))
    await _new(connector, tid + "0")  # a longer id sharing the prefix is not a match
    found = await connector.find_issues(tid)
    assert [i.id for i in found] == [created.id]
    assert found[0].due_date == date(2026, 12, 7)
    assert found[0].custom(connector.tracking_field_id) == tid
    assert await connector.find_issue(_tid()) is None
    project = await connector.project("disdukcapil")
    assert project is not None and found[0].project_id == project.id
    # a filter value with Redmine's operator characters is taken literally
    assert await connector.find_issues("~" + tid[:3]) == []


@needs_redmine
async def test_real_private_issue_is_hidden_from_a_developer_officer(rm: Any) -> None:
    connector, officer = rm
    tid = _tid()
    created = await _new(connector, tid, is_private=True)
    assert created.is_private
    assert [i.id for i in await connector.find_issues(tid)] == [created.id]
    # Default "Developer" sees only non-private issues: agencies need a role that sees all.
    assert await officer.find_issues(tid) == []


@needs_redmine
async def test_real_status_move_and_refusals(rm: Any) -> None:
    connector, officer = rm
    created = await _new(connector, _tid())
    after = await officer.update_issue(created.id, status="In Progress", notes="Sedang dicek")
    assert after.status_id == (await connector.status("In Progress")).id
    # Developer's workflow has no way back to New: Redmine answers 204 and ignores it.
    with pytest.raises(RedmineRefused, match="not applied") as err:
        await officer.update_issue(created.id, status="New")
    assert err.value.reason == "ignored"
    moved = await connector.update_issue(created.id, project="pengaduan", notes="dipindahkan")
    target = await connector.project("pengaduan")
    assert target is not None and moved.project_id == target.id
    with pytest.raises(RedmineRefused, match="project_not_found"):
        await connector.update_issue(created.id, project="tidak-ada")
    closed = await connector.update_issue(created.id, status="Closed", notes="Ditutup")
    assert closed.status_closed
    # closed issues are still found (status_id=*)
    assert await connector.find_issue(str(created.custom(connector.tracking_field_id))) is not None


@needs_redmine
async def test_real_public_and_private_notes_and_journals_since(rm: Any) -> None:
    connector, officer = rm
    me = await connector.current_user()
    officer_user = await officer.current_user()
    since = datetime.now(UTC) - timedelta(seconds=2)
    created = await _new(connector, _tid())
    await officer.update_issue(created.id, status="In Progress", notes="Balasan publik")
    await officer.update_issue(
        created.id, status="Resolved", notes="Catatan internal", private_notes=True
    )
    await connector.update_issue(created.id, notes="Balasan pelapor dari LAPOR!")

    issues = {i.id: i for i in await connector.updated_since(since)}
    journals = issues[created.id].journals
    by_officer = [j for j in journals if j.user_id == officer_user.id]
    own = [j for j in journals if j.user_id == me.id]
    assert [j.notes for j in own] == ["Balasan pelapor dari LAPOR!"]
    # public note + status: one journal
    first = by_officer[0]
    assert first.notes == "Balasan publik" and not first.private_notes
    assert first.changed("status_id") is not None
    # private note + status: Redmine splits it, a public status-only journal and a
    # private notes-only one
    status_only = [j for j in by_officer[1:] if j.changed("status_id")]
    private = [j for j in by_officer[1:] if j.private_notes]
    assert len(status_only) == 1 and status_only[0].notes == "" and not status_only[0].private_notes
    assert len(private) == 1 and private[0].notes == "Catatan internal" and not private[0].details
    ids = [j.id for j in journals]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    # nothing older came back; Redmine's ">=" reaches back one second (it compares
    # "> since - 1s" against sub-second times it shows truncated)
    floor = since.replace(microsecond=0) - timedelta(seconds=1)
    assert all(i.updated_on >= floor for i in issues.values())


@needs_redmine
async def test_real_validation_error_names_the_tracking_id(rm: Any) -> None:
    connector, _ = rm
    tid = _tid()
    with pytest.raises(RedmineRefused, match=f"{tid}.*invalid.*Subject cannot be blank"):
        await _new(connector, tid, subject="")
    assert await connector.find_issue(tid) is None


@needs_redmine
async def test_real_online_mapping_check(rm: Any) -> None:
    connector, officer = rm
    mapping = redmine_mapping.load(ROOT / "mappings")
    projects = {"agency[1] DINKES": "dinkes", "agency[2] PUPR": "pupr"}
    problems = await redmine_mapping.check_online(mapping, connector, projects)
    assert problems == [
        "agencies.toml: agency[2] PUPR: redmine_project: no project 'pupr' "
        "visible to the connector's Redmine user"
    ]
    bad = redmine_mapping.RedmineMapping(
        "Pengaduan", {**mapping.to_redmine, "closed": "Resolved", "new": "Baru"}, mapping.to_local
    )
    problems = await redmine_mapping.check_online(bad, connector)
    assert any("tracker: no tracker 'Pengaduan'" in p for p in problems)
    assert any("statuses: new: no status 'Baru'" in p for p in problems)
    assert any("statuses: closed: Redmine status 'Resolved' is not a closed" in p for p in problems)
    # a non-admin key cannot list custom fields: said so, not crashed
    problems = await redmine_mapping.check_online(mapping, officer)
    assert any("needs an admin key" in p for p in problems)


async def test_a_loopback_redmine_is_never_reached_through_a_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 23 item 12: plain http goes to loopback only, and never through a proxy that
    would read the API key in clear."""
    from tests.test_transport import raw_server, replying

    proxied: list[bytes] = []
    direct: list[bytes] = []
    user = b'{"user": {"id": 1, "login": "connector"}}'
    answer = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(user), user)
    )
    async with (
        raw_server(replying(answer, proxied)) as proxy,
        raw_server(replying(answer, direct)) as redmine,
    ):
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
            monkeypatch.setenv(name, proxy)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        async with RedmineClient(redmine, KEY, tracking_field_id=1) as c:
            with contextlib.suppress(RedmineRefused, RetryLater):
                await c.current_user()
    assert proxied == [] and direct
