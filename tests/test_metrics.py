"""/metrics and /healthz: the daemon against the sandbox as a separate process."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from connector import __version__
from connector.health import HealthReport
from connector.metrics import Metrics, Reachability
from connector.settings import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from tests.conftest import ROOT, write_config
from tests.factories import count, free_port, get
from tests.waits import wait_for


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_progress_feeds_counters_by_delta_and_cycles_restart_at_zero() -> None:
    m = Metrics()
    zero = {
        "fetched": 0,
        "created": 0,
        "updated": 0,
        "unchanged": 0,
        "held": 0,
        "quarantined": 0,
        "pages": 0,
    }
    m.progress("pull", zero)
    m.progress("pull", {**zero, "fetched": 10, "created": 4})
    m.progress("pull", {**zero, "fetched": 20, "created": 7, "held": 1})
    m.progress("pull", zero)  # the next cycle
    m.progress("pull", {**zero, "fetched": 3, "created": 2})
    push0 = {"queued": 0, "pushed": 0, "replayed": 0, "failed": 0, "deferred": 0}
    m.progress("push", push0)
    m.progress("push", {**push0, "pushed": 2, "replayed": 1, "failed": 1})
    m.request("detail", "200", 0.1)
    got = samples(m.exposition())
    assert got[("lapor_connector_records_total", (("action", "created"),))] == 9
    assert got[("lapor_connector_records_total", (("action", "held"),))] == 1
    assert got[("lapor_connector_records_total", (("action", "updated"),))] == 0
    assert got[("lapor_connector_followups_total", (("result", "sent"),))] == 1
    assert got[("lapor_connector_followups_total", (("result", "replayed"),))] == 1
    assert got[("lapor_connector_followups_total", (("result", "failed"),))] == 1
    assert (
        got[("lapor_connector_lapor_requests_total", (("code", "200"), ("endpoint", "detail")))]
        == 1
    )
    assert got[("lapor_connector_build_info", (("version", __version__),))] == 1


def test_reachability_counts_answers_not_errors() -> None:
    now = [0.0]
    r = Reachability(clock=lambda: now[0])
    r.observe("200")
    now[0] = 5
    r.observe("ConnectError")
    now[0] = 20
    r.observe("503")
    assert r.unreachable_for() == 15 and r.idle_for() == 20
    r.observe("429")  # rate limited is still LAPOR! answering
    assert r.unreachable_for() == 0


@pytest.mark.slow
def test_daemon_metrics_and_health_against_a_separate_lapor(tmp_path: Path, db_url: str) -> None:
    lapor_port, metrics_port = free_port(), free_port()
    sb_dir = tmp_path / "sandbox"
    sb_dir.mkdir()
    (sb_dir / "settings.toml").write_text(
        "[sandbox]\nrate_limit_per_minute = 0\ngenerator = false\n"
    )
    lapor = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "connector",
            "sandbox",
            "--port",
            str(lapor_port),
            "--complaints",
            "25",
            "--no-generator",
        ],
        cwd=sb_dir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    site = tmp_path / "site"
    cfg = write_config(
        site,
        db_url,
        "[sync]\npull_interval_s = 1\npush_interval_s = 1\njitter_s = 0.1\nmax_backoff_s = 2\n",
    )
    cfg.write_text(
        cfg.read_text().replace(
            'base_url = "sandbox"',
            f'base_url = "http://127.0.0.1:{lapor_port}"\ncall_deadline_s = 3',
        )
    )
    env = {
        **os.environ,
        "LAPOR_CLIENT_ID": DEMO_CLIENT_ID,
        "LAPOR_CLIENT_SECRET": DEMO_CLIENT_SECRET,
        "LAPOR_CONNECTOR_LOG__LEVEL": "info",
        "LAPOR_CONNECTOR_METRICS__LISTEN": f"127.0.0.1:{metrics_port}",
    }
    log = (site / "daemon.log").open("w")
    base = f"http://127.0.0.1:{metrics_port}"
    daemon = subprocess.Popen(
        [sys.executable, "-m", "connector", "--config", str(cfg), "run"],
        cwd=site,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(
            lambda: (
                count(site, "SELECT count(*) FROM tickets")
                + count(site, "SELECT count(*) FROM quarantine")
                >= 25
            ),
            60,
            "the complaints synced",
        )
        wait_for(lambda: get(base + "/healthz")[0] == 200, 30, "a healthy /healthz")
        code, body = get(base + "/healthz")
        rep = json.loads(body)
        assert rep["healthy"] and rep["database"].endswith(db_url.rpartition("/")[2])
        assert "pull" in rep and "outbox" in rep  # the body of `status --json`
        status, text = get(base + "/metrics")
        assert status == 200
        got = samples(text)
        tickets = count(site, "SELECT count(*) FROM tickets")
        assert got[("lapor_connector_records_total", (("action", "created"),))] == tickets
        assert time.time() - got[("lapor_connector_pull_last_success_timestamp_seconds", ())] < 30
        assert got[("lapor_connector_build_info", (("version", __version__),))] == 1
        for name in (
            "lapor_connector_followups_total",
            "lapor_connector_outbox_entries",
            "lapor_connector_quarantine_entries",
            "lapor_connector_overdue_tickets",
            "lapor_connector_push_last_success_timestamp_seconds",
            "lapor_connector_lapor_requests_total",
            "lapor_connector_lapor_request_duration_seconds_count",
        ):
            assert any(k[0] == name for k in got), name
        assert (
            got[("lapor_connector_lapor_requests_total", (("code", "200"), ("endpoint", "detail")))]
            >= tickets
        )
        # No label value is a tracking id (7 digits) or anything but a short word.
        for _, labels in got:
            for _key, value in labels:
                assert not re.fullmatch(r"\d{6,}", value) and len(value) < 40, value
        assert get(base + "/nope")[0] == 404
        # LAPOR! disappears: degraded within a minute.
        lapor.send_signal(signal.SIGTERM)
        lapor.wait(timeout=10)
        t0 = time.monotonic()
        wait_for(lambda: get(base + "/healthz")[0] == 503, 60, "/healthz 503")
        assert time.monotonic() - t0 < 60
        findings = {f["code"] for f in json.loads(get(base + "/healthz")[1])["findings"]}
        assert findings & {"lapor_unreachable", "pull_failing"}
        assert samples(get(base + "/metrics")[1])[("lapor_connector_healthy", ())] == 0
    finally:
        if lapor.poll() is None:
            lapor.kill()
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=30)
        log.close()
    text = (site / "daemon.log").read_text()
    assert code == 0, text[-2000:]
    assert "metrics_listening" in text and "Traceback" not in text


@pytest.mark.slow
def test_a_port_in_use_is_logged_and_the_daemon_runs_on(tmp_path: Path, db_url: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        site = tmp_path / "site"
        cfg = write_config(
            site,
            db_url,
            "[sync]\npull_interval_s = 1\njitter_s = 0.1\n"
            f'[metrics]\nlisten = "127.0.0.1:{port}"\n',
            sandbox="complaints = 5\n",
        )
        log = site / "d.log"
        d = subprocess.Popen(
            [sys.executable, str(ROOT / "scheduler.py"), "--config", str(cfg)],
            cwd=site,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(
                lambda: count(site, "SELECT count(*) FROM runs WHERE kind='pull' AND ok") > 0,
                60,
                "a pull",
            )
        finally:
            d.send_signal(signal.SIGTERM)
            code = d.wait(timeout=30)
    assert code == 0 and "metrics_unavailable" in log.read_text()


def test_alert_rules_use_only_metrics_the_connector_exports() -> None:
    import yaml

    rules = yaml.safe_load((ROOT / "deploy" / "prometheus-alerts.yml").read_text())
    exported = {f.name for f in text_string_to_metric_families(Metrics().exposition())}
    exported |= {n + "_total" for n in exported}
    alerts = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}
    assert {
        "LaporConnectorNoPull",
        "LaporConnectorFollowUpsFailed",
        "LaporConnectorQuarantineGrowing",
        "LaporConnectorOverdueTickets",
    } <= set(alerts)
    assert "600" in alerts["LaporConnectorNoPull"]  # ten minutes
    for expr in alerts.values():
        for name in re.findall(r"\blapor_connector_\w+", expr):
            assert name in exported, name


def fake_report(quarantine: dict[str, int], healthy: bool = True) -> HealthReport:
    from datetime import UTC, datetime

    from connector.health import Finding, OutboxHealth, OverdueHealth, PullHealth
    from connector.store.state import RunRecord

    ended = datetime.fromisoformat("2026-11-28T00:00:00+00:00")
    return HealthReport(
        now=datetime.now(UTC),
        settings="settings.toml",
        database="sqlite",
        findings=() if healthy else (Finding("pull_stale", ""),),
        pull=PullHealth(last_ok=RunRecord(ended, ended, True, {}, None)),
        outbox=OutboxHealth(pending=2, sent=5, failed=1),
        quarantine=quarantine,
        overdue=OverdueHealth(count=3),
    )


def test_monitor_serves_health_and_gauges_from_what_the_loop_computed() -> None:
    from datetime import UTC, datetime

    from connector.metrics import Monitor

    now = [0.0]
    reports = [fake_report({"unmapped_unit": 2}), fake_report({})]
    failures = {"pull": 0, "push": 0}
    reach = Reachability(clock=lambda: now[0])
    mon = Monitor(Metrics(), lambda: reports[0], lambda: failures, reach, lambda: datetime.now(UTC))
    host, port = mon.start("127.0.0.1", 0)
    base = f"http://{host}:{port}"
    try:
        assert get(base + "/healthz")[0] == 503  # nothing computed yet: starting
        mon.refresh()
        code, body = get(base + "/healthz")
        assert code == 200 and json.loads(body)["overdue"]["count"] == 3
        got = samples(get(base + "/metrics")[1])
        assert got[("lapor_connector_outbox_entries", (("state", "failed"),))] == 1
        assert got[("lapor_connector_quarantine_entries", ())] == 2
        assert got[("lapor_connector_overdue_tickets", ())] == 3
        assert (
            got[("lapor_connector_pull_last_success_timestamp_seconds", ())]
            == datetime(2026, 11, 28, tzinfo=UTC).timestamp()
        )
        reports[0] = reports[1]
        failures["pull"] = 2
        mon.refresh()
        code, body = get(base + "/healthz")
        assert code == 503 and [f["code"] for f in json.loads(body)["findings"]] == ["pull_failing"]
        got = samples(get(base + "/metrics")[1])
        assert (
            got[("lapor_connector_quarantine_entries_by_reason", (("reason", "unmapped_unit"),))]
            == 0
        )
        failures["pull"] = 0
        reach.observe("ConnectError")
        now[0] = 11
        mon.refresh()
        assert "lapor_unreachable" in get(base + "/healthz")[1]
        reach.observe("200")
        mon.refresh()
        assert get(base + "/healthz")[0] == 200
        mon.failed("database is locked")
        assert "storage_error" in get(base + "/healthz")[1]
    finally:
        mon.stop()


def test_a_flood_of_half_open_connections_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 23 item 3: 1,100 silent connections took every file descriptor. Now at most
    MAX_CONNECTIONS are held (each for at most the read timeout); the rest are closed at
    once, and the listener answers again as soon as the flood's connections time out."""
    import threading
    from datetime import UTC, datetime

    from connector import metrics as mod

    monkeypatch.setattr(mod._QuietHandler, "timeout", 0.5)
    mon = mod.Monitor(
        Metrics(),
        lambda: fake_report({}),
        lambda: {"pull": 0, "push": 0},
        Reachability(),
        lambda: datetime.now(UTC),
    )
    host, port = mon.start("127.0.0.1", 0)
    threads_before = threading.active_count()
    flood: list[socket.socket] = []
    try:
        mon.refresh()
        for _ in range(300):
            s = socket.create_connection((host, port), timeout=5)
            s.sendall(b"GET /healthz HTTP/1.1\r\n")  # and never the rest
            flood.append(s)
        time.sleep(0.2)
        assert threading.active_count() - threads_before <= mod.MAX_CONNECTIONS
        closed = 0
        for s in flood:
            s.settimeout(0.01)
            try:
                closed += s.recv(1) == b""
            except (TimeoutError, ConnectionError):
                closed += isinstance(sys.exc_info()[1], ConnectionError)
        assert closed >= len(flood) - mod.MAX_CONNECTIONS
        wait_for(
            lambda: get(f"http://{host}:{port}/healthz")[0] == 200,
            10,
            "/healthz answering through the flood",
        )
    finally:
        for s in flood:
            s.close()
        mon.stop()


def test_healthz_turns_503_when_its_report_goes_stale() -> None:
    """Issue 23 item 6: a loop that stops refreshing (blocked on a FIFO, timers frozen)
    must not leave /healthz answering the last healthy report."""
    from datetime import UTC, datetime

    from connector.metrics import Monitor

    t = [100.0]
    mon = Monitor(
        Metrics(),
        lambda: fake_report({}),
        lambda: {"pull": 0, "push": 0},
        Reachability(clock=lambda: t[0]),
        lambda: datetime.now(UTC),
        stale_after_s=30,
        clock=lambda: t[0],
    )
    mon.refresh()
    assert mon.served()[1] is True
    t[0] += 31
    body, healthy = mon.served()
    assert not healthy and json.loads(body)["findings"][0]["code"] == "health_stale"
    mon.refresh()
    assert mon.served()[1] is True


@pytest.mark.parametrize("kind", ["fifo", "device", "huge"])
def test_a_mapping_file_that_is_no_regular_file_is_refused_without_blocking(
    tmp_path: Path, kind: str
) -> None:
    """Issue 23 item 6: a FIFO froze the reader, /dev/zero took 1.9 GB."""
    import shutil

    from connector.mapping_reload import MappingHolder
    from connector.mappings import MAX_FILE_BYTES, MappingError, load

    folder = tmp_path / "mappings"
    shutil.copytree(ROOT / "mappings", folder)
    holder = MappingHolder(folder)
    holder.load_initial()
    target = folder / "categories.toml"
    target.unlink()
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "device":
        target.symlink_to("/dev/zero")
    else:
        target.write_bytes(b"#" * (MAX_FILE_BYTES + 10))
    t0 = time.monotonic()
    with pytest.raises(MappingError, match=r"categories\.toml: -: -: cannot read"):
        load(folder)
    assert not holder.reload_if_changed() and "cannot read" in (holder.error or "")
    assert time.monotonic() - t0 < 5
