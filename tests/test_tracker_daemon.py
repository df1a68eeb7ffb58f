"""The daemon with an external tracker that cannot be reached: the tracker worker is its
own job (failure logged once, backing off), LAPOR! intake goes on, metrics show the
intent queue."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, write_config
from tests.factories import count, free_port
from tests.waits import wait_for

pytestmark = pytest.mark.slow


def test_daemon_tracker_job_waits_for_redmine_while_intake_goes_on(
    tmp_path: Path, db_url: str
) -> None:
    site = tmp_path / "site"
    metrics = free_port()
    cfg = write_config(
        site,
        db_url,
        "[sync]\npull_interval_s = 1\npush_interval_s = 1\ntracker_interval_s = 0.5\n"
        "jitter_s = 0.1\nmax_backoff_s = 2\n"
        f'[metrics]\nlisten = "127.0.0.1:{metrics}"\n'
        f'[tracker]\nkind = "redmine"\n[tracker.redmine]\nurl = "http://127.0.0.1:{free_port()}"\n'
        'project = "pengaduan"\ntracking_field_id = 1\ntimeout_s = 1\n',
        sandbox="complaints = 10\ngenerator = false",
    )
    env = {
        **os.environ,
        "REDMINE_API_KEY": "rahasia-kunci-redmine-77",
        "LAPOR_CONNECTOR_LOG__LEVEL": "info",
        "LAPOR_CONNECTOR_LOG__FORMAT": "json",
    }
    log = site / "daemon.log"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scheduler.py"), "--config", str(cfg)],
        cwd=site,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(
            lambda: count(site, "SELECT count(*) FROM runs WHERE kind='tracker'") >= 3,
            60,
            "several tracker cycles",
        )
        assert count(site, "SELECT count(*) FROM links") > 0  # intake went on
        assert count(site, "SELECT count(*) FROM tracker_intents WHERE state='pending'") > 0
        assert count(site, "SELECT count(*) FROM runs WHERE kind='pull' AND ok") >= 1
        body = (
            urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5).read().decode()
        )
        line = next(
            x
            for x in body.splitlines()
            if x.startswith('lapor_connector_tracker_intents{state="pending"}')
        )
        assert float(line.split()[-1]) > 0
        assert 'lapor_connector_consecutive_failures{job="tracker"}' in body
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
    text = log.read_text()
    assert code == 0
    assert text.count('"tracker_failing"') == 1  # told once, not at every attempt
    assert "rahasia-kunci-redmine-77" not in text
