"""E-mail notifications against a real SMTP server (aiosmtpd on loopback), fed by the
real pull, push and desk over a real database: who gets what, what a message never
says, bundling, the digest's clock, and delivery through outages, refusals and crashes."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from connector.desk import queries
from connector.desk.accounts import Role
from connector.mapping_reload import MappingHolder
from connector.notify import core, queue, send
from connector.sandbox import World
from connector.sandbox.faults import Faults
from connector.status import report
from connector.store import followups, schema, state
from connector.timeutil import WITA, is_working_day
from tests.conftest import FakeTime
from tests.factories import PASSWORD, Site, add_user, csrf_of, field, login
from tests.harness import Harness
from tests.smtp_server import Received, SMTPServer
from tests.waits import until

pytestmark = pytest.mark.anyio
DESK = "https://desk.mahulu.test"


def mailbox(agency: str) -> str:
    return f"{agency.lower()}@opd.mahulu.test"


@pytest.fixture
def smtp() -> Iterator[SMTPServer]:
    server = SMTPServer().start()
    yield server
    server.stop()


def notify_settings(port: int, **kw: Any) -> dict[str, Any]:
    return {
        "notify": {
            "enabled": True,
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
            "security": "none",
            "from": "lapor@mahulu.test",
            "desk_url": DESK,
            "bundle_s": 0,
            "timeout_s": 5,
            **kw,
        }
    }


def with_mailboxes(h: Harness) -> None:
    """Every agency of the shipped mappings gets a mailbox."""
    path = h.config.mappings_dir / "agencies.toml"
    text = re.sub(
        r'^code = "([A-Z0-9_]+)"$',
        lambda m: f'{m.group(0)}\nemail = ["{mailbox(m.group(1))}"]',
        path.read_text(encoding="utf-8"),
        flags=re.M,
    )
    path.write_text(text, encoding="utf-8")
    holder = MappingHolder(h.config.mappings_dir)
    holder.load_initial()
    h.mappings = holder
    h.ctx.mappings = holder


def make(
    tmp_path: Path,
    db_url: str,
    world: World,
    fake_time: FakeTime,
    port: int,
    digest: bool = False,
    **kw: Any,
) -> tuple[Harness, send.Sender]:
    h = Harness(tmp_path / "site", db_url, world, fake_time, settings=notify_settings(port, **kw))
    with_mailboxes(h)
    if not digest:  # the test is about other messages: no digest comes in between
        h.store.run(lambda c: state.set_value(c, queue.DIGEST_KEY, "9999-12-31"))
    return h, sender(h)


def sender(h: Harness, password: str | None = None) -> send.Sender:
    return send.sender_for(h.config, password, h.ctx.db, lambda: h.mappings(), h.ctx.now)


def secrets_of(world: World) -> list[str]:
    """What must never reach e-mail: reporters' names, e-mails and phones, the complaint
    text, attachment names."""
    out: list[str] = []
    for r in world.records.values():
        if r["pelapor"]:
            out += [v for v in r["pelapor"].values() if v]
        out.append(r["isi"])
        out += [a["nama"] for a in r["lampiran"]]
    return out


def assert_private(world: World, received: list[Received]) -> None:
    secrets = secrets_of(world)
    for msg in received:
        for s in secrets:
            assert s not in msg.raw and s not in msg.text, (s, msg.message["Subject"])
        for tid, r in world.records.items():
            if r["rahasia"] and str(tid) in msg.text:
                # The line of a rahasia complaint names no title.
                for found in re.findall(rf"^- {tid} \([A-Z0-9_]+\): (.*)$", msg.text, re.M):
                    assert found == core.SECRET_TITLE, (tid, found)
                assert r["judul"] not in msg.text.split(f"- {tid} ")[-1].split("\n")[0]


def by_agency(h: Harness) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for t in h.tickets():
        out.setdefault(t["agency"], set()).add(t["tracking_id"])
    return out


# -- new complaints ---------------------------------------------------------------------------


@pytest.fixture
def backlog(fake_time: FakeTime) -> World:
    return World(seed=11, complaints=300, faults=Faults(rate_limit_per_minute=0), clock=fake_time)


async def test_a_backlog_of_300_is_one_message_per_agency_mailbox_with_every_line(
    tmp_path: Path, db_url: str, backlog: World, fake_time: FakeTime, smtp: SMTPServer
) -> None:
    h, mailer = make(tmp_path, db_url, backlog, fake_time, smtp.port)
    h.ctx.cadence = type(h.ctx.cadence)(records=40, seconds=5.0)  # several commits per pull
    await h.pull()
    rows = h.store.run(lambda c: list(c.execute(select(schema.notifications))))
    assert len({r.created_at for r in rows}) >= 1 and len(rows) > len(by_agency(h))
    done = await mailer.tick()
    expected = by_agency(h)
    assert sum(len(v) for v in expected.values()) >= 250
    assert done["sent"] == len(expected)
    for agency, tids in expected.items():
        got = smtp.handler.to(mailbox(agency))
        assert len(got) == 1, agency
        text = got[0].text
        assert f"{len(tids)} laporan baru untuk {agency}" in str(got[0].message["Subject"])
        listed = set(re.findall(r"^- (\d+) \(", text, re.M))
        assert listed == tids
        for tid in tids:
            assert f"{DESK}/tiket/{tid}" in text
        assert "WITA" in text and "Batas tindak lanjut" in text
        assert got[0].message.is_multipart()  # plain text plus HTML
    assert_private(backlog, smtp.handler.received)
    assert any(r["rahasia"] for r in backlog.records.values())
    # Nothing twice.
    assert (await mailer.tick())["sent"] == 0
    # The next pull's new complaint: one more message, to its agency only.
    fake_time.t += 60
    tid = str(backlog.add_complaints(1)[0])
    before = len(smtp.handler.received)
    await h.pull()
    await mailer.tick()
    agency = h.ticket(tid)["agency"]
    new = smtp.handler.received[before:]
    assert [m.rcpt for m in new] == [[mailbox(agency)]]
    assert f"- {tid} ({agency})" in new[0].text


async def test_a_pulls_rows_wait_for_the_end_of_the_pull(
    tmp_path: Path, db_url: str, world: World, fake_time: FakeTime, smtp: SMTPServer
) -> None:
    h, mailer = make(tmp_path, db_url, world, fake_time, smtp.port)
    await h.pull()
    await mailer.tick()
    fake_time.t += 60
    cfg, now = h.config.settings.notify, h.ctx.now()
    agency = h.tickets()[0]["agency"]
    h.store.run(
        lambda c: queue.new_complaints(
            c,
            cfg,
            h.mappings(),
            [queue.Complaint("999001", agency, "Jalan rusak", False, None)],
            now,
        )
    )
    assert (await mailer.tick())["sent"] == 0  # the pull that wrote it is still running
    fake_time.t += 5
    h.store.run(lambda c: state.record_run(c, "pull", now, h.ctx.now(), True, {}, None))
    assert (await mailer.tick())["sent"] == 1


# -- assignment and replies -------------------------------------------------------------------


async def test_assignment_on_the_desk_mails_the_assignee_only(
    tmp_path: Path, db_url: str, world: World, fake_time: FakeTime, smtp: SMTPServer
) -> None:
    h, mailer = make(tmp_path, db_url, world, fake_time, smtp.port)
    await h.pull()
    await mailer.tick()
    t = next(t for t in h.tickets() if t["confidential"] and t["status"] != "closed")
    add_user(h, "ani", Role.PETUGAS, [t["agency"]], "ani@opd.mahulu.test")
    add_user(h, "budi", Role.PETUGAS, [t["agency"]], "budi@opd.mahulu.test")
    before = len(smtp.handler.received)
    site = Site(h)
    async with site.client() as c:
        await login(c, "ani", PASSWORD)
        page = await c.get(f"/tiket/{t['tracking_id']}")
        r = await c.post(
            f"/tiket/{t['tracking_id']}",
            data={
                "csrf": csrf_of(page.text),
                "form_id": field(page.text, "form_id"),
                "versi": field(page.text, "versi"),
                "status": "",
                "balasan": "",
                "catatan": "",
                "petugas_asal": field(page.text, "petugas_asal"),
                "petugas": "budi",
            },
        )
        assert r.status_code == 303
    await mailer.tick()
    new = smtp.handler.received[before:]
    assert [m.rcpt for m in new] == [["budi@opd.mahulu.test"]]
    text = new[0].text
    assert f"Laporan {t['tracking_id']} ditugaskan kepada Anda" in text
    assert "Ditugaskan oleh Petugas ani" in text
    assert f"{DESK}/tiket/{t['tracking_id']}" in text
    assert t["title"] not in text and core.SECRET_TITLE in text  # rahasia
    assert_private(world, new)


async def test_a_reporter_reply_goes_to_the_assignee_else_to_the_agency(
    tmp_path: Path, db_url: str, world: World, fake_time: FakeTime, smtp: SMTPServer
) -> None:
    h, mailer = make(tmp_path, db_url, world, fake_time, smtp.port)
    await h.pull()
    await mailer.tick()
    open_ = [
        t for t in h.tickets() if world.records[int(t["tracking_id"])]["status"] == "terdisposisi"
    ]
    assigned, free = open_[0], next(t for t in open_[1:] if t["agency"] != open_[0]["agency"])
    add_user(h, "citra", Role.PETUGAS, [assigned["agency"]], "citra@opd.mahulu.test")
    h.store.run(lambda c: queries.assign(c, int(assigned["id"]), "citra", h.ctx.now()))
    before = len(smtp.handler.received)
    for t in (assigned, free):
        fake_time.t += 5
        rec = world.records[int(t["tracking_id"])]
        world.append_follow_up(
            rec, "pelapor", None, None, "Mohon segera, sudah seminggu.", world.now()
        )
        rec["diperbarui"] = world.now()
    await h.pull()
    await mailer.tick()
    new = smtp.handler.received[before:]
    rcpts = sorted(r for m in new for r in m.rcpt)
    assert rcpts == sorted(["citra@opd.mahulu.test", mailbox(free["agency"])])
    for m in new:
        assert "Pelapor membalas laporan" in m.text
        assert "Mohon segera" not in m.raw and "Mohon segera" not in m.text
    # citra's own agency mailbox heard nothing of it: the complaint has an assignee.
    assert not [m for m in new if mailbox(assigned["agency"]) in m.rcpt]
    assert_private(world, new)


# -- a follow-up refused for good -------------------------------------------------------------


async def test_a_follow_up_refused_for_good_mails_the_admins(
    tmp_path: Path, db_url: str, world: World, fake_time: FakeTime, smtp: SMTPServer
) -> None:
    h, mailer = make(tmp_path, db_url, world, fake_time, smtp.port)
    await h.pull()
    await mailer.tick()
    add_user(h, "root", Role.ADMIN, [], "admin@mahulu.test")
    add_user(h, "quiet", Role.ADMIN, [], "quiet@mahulu.test")
    h.store.run(
        lambda c: c.execute(
            update(schema.desk_users)
            .where(schema.desk_users.c.login == "quiet")
            .values(notify=",baru,")
        )
    )
    t = next(
        t for t in h.tickets() if world.records[int(t["tracking_id"])]["status"] == "terdisposisi"
    )
    h.officer(t["id"], status="in_progress", reply="Sedang kami periksa.", author="ani")
    world.records[int(t["tracking_id"])]["status"] = "diarsipkan"  # LAPOR! refuses: 409
    before = len(smtp.handler.received)
    await h.push()
    assert h.outbox()[0]["state"] == "failed"
    await mailer.tick()
    new = smtp.handler.received[before:]
    assert [m.rcpt for m in new] == [["admin@mahulu.test"]]
    assert f"Tindak lanjut laporan {t['tracking_id']} ditolak LAPOR!" in new[0].text
    assert "Sedang kami periksa" not in new[0].text


# -- the daily digest -------------------------------------------------------------------------


def working_morning(after: datetime, weekday: int, at: tuple[int, int]) -> datetime:
    day = after.astimezone(WITA).date() + timedelta(days=1)
    while day.weekday() != weekday or not is_working_day(day):
        day += timedelta(days=1)
    return datetime(day.year, day.month, day.day, *at, tzinfo=WITA)


def expected_digest(h: Harness) -> dict[str, set[str]]:
    """Per agency, what is overdue or due by the end of the next working day (the stored
    periods of LAPOR!'s clock, read another way than the digest does)."""
    now = h.ctx.now()
    until = core.end_of(core.next_working_day(now.astimezone(WITA).date(), frozenset()))
    ids = [t["tracking_id"] for t in h.tickets()]
    facts = h.store.run(lambda c: followups.get_facts(c, ids))
    out: dict[str, set[str]] = {}
    for tid, f in facts.items():
        p = f.current
        if not f.closed and p.first_follow_up_at is None and p.due_at <= until:
            out.setdefault(p.agency, set()).add(tid)
    return out


async def test_the_digest_comes_on_working_mornings_at_digest_time_only(
    tmp_path: Path, db_url: str, world: World, fake_time: FakeTime, smtp: SMTPServer
) -> None:
    h, mailer = make(
        tmp_path, db_url, world, fake_time, smtp.port, digest=True, digest_time="07:30"
    )
    await h.pull()
    await mailer.tick()
    monday = working_morning(h.ctx.now() + timedelta(days=12), 0, (7, 29))
    sunday = monday - timedelta(days=1, hours=-1)

    def digests() -> list[Any]:
        return [m for m in smtp.handler.received if "Ringkasan harian" in str(m.message["Subject"])]

    fake_time.t = sunday.timestamp()
    await mailer.tick()
    assert digests() == []  # no message on a Sunday
    fake_time.t = monday.timestamp()
    await mailer.tick()
    assert digests() == []  # 07:29 WITA
    fake_time.t += 60
    await mailer.tick()
    got = digests()
    overdue = expected_digest(h)
    assert got and {r for m in got for r in m.rcpt} == {mailbox(a) for a in overdue}
    for m in got:
        agency = re.search(r"Ringkasan harian ([A-Z0-9_]+)", str(m.message["Subject"]))
        assert agency is not None
        listed = set(re.findall(r"^- (\d+) \(", m.text, re.M))
        assert listed == overdue[agency.group(1)]
        assert "Terlambat" in m.text
    assert_private(world, got)
    fake_time.t += 3600
    await mailer.tick()
    assert len(digests()) == len(got)  # once a day


async def test_no_digest_when_there_is_nothing_to_say(
    tmp_path: Path, db_url: str, world: World, fake_time: FakeTime, smtp: SMTPServer
) -> None:
    h, mailer = make(tmp_path, db_url, world, fake_time, smtp.port, digest=True)
    # Nothing pulled: no complaint, nothing due.
    fake_time.t = working_morning(h.ctx.now(), 1, (8, 0)).timestamp()
    await mailer.tick()
    assert smtp.handler.received == []
    assert h.store.run(queue.last_digest) is not None


# -- delivery -------------------------------------------------------------------------------


async def test_5xx_is_final_and_shown_masked_4xx_is_retried(
    tmp_path: Path, db_url: str, world: World, fake_time: FakeTime, smtp: SMTPServer
) -> None:
    h, mailer = make(tmp_path, db_url, world, fake_time, smtp.port)
    agencies = sorted(by_agency(h) or {a.code for a in h.mappings().agencies})
    await h.pull()
    agencies = sorted(by_agency(h))
    gone, busy = mailbox(agencies[0]), mailbox(agencies[1])
    smtp.handler.rcpt_answers[gone] = ["550 5.1.1 No such user"]
    smtp.handler.rcpt_answers[busy] = ["451 4.3.0 Try again later", "250 OK"]
    done = await mailer.tick()
    assert done["failed"] == 1 and done["retry"] == 1
    assert not smtp.handler.to(gone) and not smtp.handler.to(busy)
    fake_time.t += 31  # past the first retry delay
    assert (await mailer.tick())["sent"] == 1
    assert len(smtp.handler.to(busy)) == 1
    fake_time.t += 3600
    await mailer.tick()
    assert not smtp.handler.to(gone)  # final: never tried again
    health = h.store.run(lambda c: report(c, h.config, h.tracker, h.ctx.now()).as_dict())
    finding = next(f for f in health["findings"] if f["code"] == "notify_failed")
    masked = core.mask(gone)
    assert masked in finding["message"] and gone not in str(health)
    assert masked.startswith(gone[0] + "***@") and "550" in finding["message"]
    assert not health["healthy"]


async def test_the_counters_on_metrics(
    tmp_path: Path, db_url: str, world: World, fake_time: FakeTime, smtp: SMTPServer
) -> None:
    from connector.metrics import Metrics

    h, _ = make(tmp_path, db_url, world, fake_time, smtp.port)
    metrics = Metrics()
    mailer = send.sender_for(
        h.config, None, h.ctx.db, lambda: h.mappings(), h.ctx.now, metrics.progress
    )
    await h.pull()
    smtp.handler.rcpt_answers[mailbox(sorted(by_agency(h))[0])] = ["550 5.1.1 No such user"]
    done = await mailer.tick()
    text = metrics.exposition()
    assert f'lapor_connector_notifications_total{{result="sent"}} {float(done["sent"])}' in text
    assert 'lapor_connector_notifications_total{result="failed"} 1.0' in text


async def test_an_smtp_outage_delays_mail_but_neither_pull_nor_push(
    tmp_path: Path, db_url: str, world: World, fake_time: FakeTime, smtp: SMTPServer
) -> None:
    port = smtp.port
    smtp.stop()  # down: connection refused
    h, mailer = make(tmp_path, db_url, world, fake_time, port)
    await h.pull()
    assert (await mailer.tick())["retry"] >= 1
    # A server that takes the connection and never answers: the mail job waits on it
    # while pulls and pushes run on the same loop, at their usual speed.
    import socket

    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen()
    hole.setblocking(False)
    taken: list[socket.socket] = []  # the mail job's connection, never answered

    def connected() -> bool:
        with contextlib.suppress(BlockingIOError):
            taken.append(hole.accept()[0])
        return bool(taken)

    black = h.config.settings.notify.model_copy(
        update={"smtp_port": hole.getsockname()[1], "timeout_s": 3.0}
    )
    stuck = send.Sender(
        h.config,
        h.ctx.db,
        lambda: h.mappings(),
        h.ctx.now,
        send.Transport(black, None, tmp_path / "mail"),
    )
    fake_time.t += 3600
    tid = str(world.add_complaints(1)[0])
    t0 = time.monotonic()
    job = asyncio.create_task(stuck.tick())
    await until(connected, 5, "the mail job to connect")
    await h.sync()
    t = next(t for t in h.tickets() if t["tracking_id"] == tid)
    h.officer(t["id"], status="in_progress", reply="Kami tindak lanjuti.", author="ani")
    await h.push()
    assert time.monotonic() - t0 < 2.5 and not job.done()
    assert any(e["state"] == "sent" for e in h.outbox())
    await job
    taken[0].close()
    hole.close()
    # Back up: everything waiting goes.
    server = SMTPServer(port).start()
    try:
        fake_time.t += 3600
        await mailer.tick()
        assert {r for m in server.handler.received for r in m.rcpt} == {
            mailbox(a) for a in by_agency(h)
        }
        assert h.store.run(queue.counts).get("pending", 0) == 0
    finally:
        server.stop()


async def test_after_a_crash_the_resend_has_the_same_message_id_and_never_a_third(
    tmp_path: Path, db_url: str, world: World, fake_time: FakeTime, smtp: SMTPServer
) -> None:
    h, _ = make(tmp_path, db_url, world, fake_time, smtp.port)
    await h.pull()
    cfg, now = h.config.settings.notify, h.ctx.now()
    # The "crash": a bundle's attempt marked and its message accepted, the answer lost.
    first = h.store.run(lambda c: queue.claim(c, cfg, now, "mahulu.test"))[0]
    assert h.store.run(lambda c: queue.start(c, first.message_id, now))
    msg = core.message(
        cfg.from_, first.recipient, *core.render(first.notices, DESK), first.message_id, first.at
    )
    await send.Transport(cfg, None, tmp_path).send_all([msg])
    await sender(h).tick()  # a new process: resends it, sends the others
    copies = smtp.handler.to(first.recipient)
    assert len(copies) == 2
    assert copies[0].message["Message-ID"] == copies[1].message["Message-ID"] == first.message_id
    assert copies[0].text == copies[1].text
    assert h.store.run(queue.counts) == {"sent": len(by_agency(h))}
    # A bundle whose resend crashed too is never sent a third time.
    fake_time.t += 60
    tid = str(world.add_complaints(1)[0])
    await h.pull()
    again = h.store.run(lambda c: queue.claim(c, cfg, h.ctx.now(), "mahulu.test"))
    assert len(again) == 1 and tid in str(again[0].notices)
    mid = again[0].message_id
    assert h.store.run(lambda c: queue.start(c, mid, h.ctx.now()))  # crash 1
    assert h.store.run(lambda c: queue.start(c, mid, h.ctx.now()))  # crash 2
    assert not h.store.run(lambda c: queue.start(c, mid, h.ctx.now()))
    assert h.store.run(lambda c: queue.claim(c, cfg, h.ctx.now(), "mahulu.test")) == []
    again = [again[0]]
    row = h.store.run(
        lambda c: c.execute(
            select(schema.notifications).where(
                schema.notifications.c.message_id == again[0].message_id
            )
        ).first()
    )
    assert row is not None
    assert row.state == "sent" and row.last_error == "unconfirmed" and row.unsure == 2


# -- sandbox mode -----------------------------------------------------------------------------


async def test_sandbox_mode_writes_eml_files_and_logs_subjects(
    tmp_path: Path,
    db_url: str,
    world: World,
    fake_time: FakeTime,
    capsys: pytest.CaptureFixture[str],
) -> None:
    h, mailer = make(tmp_path, db_url, world, fake_time, 0, smtp_host="sandbox")
    await h.pull()
    done = await mailer.tick()
    files = sorted((h.config.base_dir / "var" / "mail").glob("*.eml"))
    assert done["sent"] == len(files) == len(by_agency(h))
    import email

    msg = email.message_from_bytes(files[0].read_bytes())
    assert "laporan baru untuk" in str(msg["Subject"]) and msg["Message-ID"]


def test_the_digest_day_is_a_working_day_past_the_time_once() -> None:
    hols: frozenset[Any] = frozenset()
    fri = datetime(2026, 5, 8, 7, 30, tzinfo=WITA)  # a Friday
    assert core.digest_day(fri, None, (7, 30), hols) == fri.date()
    assert core.digest_day(fri - timedelta(minutes=1), None, (7, 30), hols) is None
    assert core.digest_day(fri, fri.date(), (7, 30), hols) is None
    assert core.digest_day(fri + timedelta(days=1), fri.date(), (7, 30), hols) is None  # Sat
    assert core.digest_day(fri, None, (7, 30), frozenset({fri.date()})) is None  # holiday
    assert core.next_working_day(fri.date(), hols).weekday() == 0
    # 23:30 UTC Sunday is 07:30 WITA Monday.
    assert (
        core.digest_day(datetime(2026, 5, 10, 23, 30, tzinfo=UTC), None, (7, 30), hols)
        == datetime(2026, 5, 11).date()
    )


# -- kill -9 between the server's acceptance and our record -------------------------------------

CHILD = """
import asyncio, sys
from pathlib import Path
from connector.mapping_reload import MappingHolder
from connector.notify import send
from connector.runtime import open_store
from connector.settings import load_config
from connector.timeutil import utcnow

config = load_config(Path(sys.argv[1]), environ={})
store = open_store(config)
holder = MappingHolder(config.mappings_dir)
holder.load_initial()

async def db(fn):
    return store.run(fn)

print(asyncio.run(send.sender_for(config, None, db, holder, utcnow).tick()), flush=True)
"""


@pytest.mark.slow
async def test_kill_9_while_the_server_answers_sends_twice_at_most_with_one_message_id(
    tmp_path: Path, db_url: str, world: World, fake_time: FakeTime, smtp: SMTPServer
) -> None:
    import os
    import signal
    import subprocess
    import sys

    h, _ = make(tmp_path, db_url, world, fake_time, smtp.port)
    fake_time.t = time.time() - 5  # the child's clock is the real one
    h.ctx.now = lambda: datetime.fromtimestamp(int(fake_time.t), UTC)
    await h.pull()
    expected = len(by_agency(h))
    smtp.handler.data_delay_s = 30  # stored, then the 250 waits: the crash window
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}

    def child() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-c", CHILD, str(h.cfg_path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    for kills in (1, 2):
        p = child()
        smtp.wait_for(kills, timeout=30)
        assert len(smtp.handler.received) == kills
        p.send_signal(signal.SIGKILL)
        p.wait()
    smtp.handler.data_delay_s = 0
    p = child()
    p.communicate(timeout=60)
    first_to = smtp.handler.received[0].rcpt
    copies = smtp.handler.to(first_to[0])
    # The first bundle: accepted twice (both answers lost), never a third time.
    assert len(copies) == 2
    assert copies[0].message["Message-ID"] == copies[1].message["Message-ID"]
    # Every other bundle: exactly once.
    others = [m for m in smtp.handler.received if m.rcpt != first_to]
    assert len(others) == expected - 1
    assert len({str(m.message["Message-ID"]) for m in others}) == expected - 1
    assert h.store.run(queue.counts).get("pending", 0) == 0
