"""``report``: on-time first follow-up per agency, from stored facts (never from logs).

A complaint belongs to the report period when LAPOR!'s ``dibuat`` (when it was
submitted) falls on one of the period's WITA calendar dates, both ends inclusive. It is
counted once, under the agency whose clock runs for its first response: the agency of
its last ``received``/``redisposition`` due period (see ``connector/sync/clock.py``).
Within that period, in order:

- ``followed_up_on_time``: the first follow-up by one of the agency's units appeared on
  LAPOR! (its ``dibuat``) at or before the due time in force then;
- ``followed_up_late``: it appeared after the due time;
- ``overdue``: none yet and the due time has passed;
- ``not_yet_due``: none yet and the due time is still ahead.

These four add up to ``received``. ``completed``: LAPOR! status ``selesai`` or
``ditutup``. ``median_working_days_to_first_follow_up``: working days (WITA dates, the
Indonesian calendar plus ``holidays.toml``) from the period's start to the first
follow-up, over the complaints followed up.
"""

from __future__ import annotations

import csv
import html
import io
import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from connector.domain import Facts, LaporStatus
from connector.mappings import Mappings
from connector.timeutil import UTC, WITA, human, tanggal_panjang, working_days_between

COLUMNS = (
    "agency",
    "received",
    "followed_up_on_time",
    "followed_up_late",
    "overdue",
    "not_yet_due",
    "completed",
    "median_working_days_to_first_follow_up",
)
TOTAL = "TOTAL"
FORMATS = ("table", "csv", "json", "html")


@dataclass
class Row:
    agency: str
    name: str
    received: int = 0
    followed_up_on_time: int = 0
    followed_up_late: int = 0
    overdue: int = 0
    not_yet_due: int = 0
    completed: int = 0
    days: list[int] = field(default_factory=list)

    @property
    def median(self) -> float | None:
        return round(float(statistics.median(self.days)), 1) if self.days else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "agency": self.agency,
            "received": self.received,
            "followed_up_on_time": self.followed_up_on_time,
            "followed_up_late": self.followed_up_late,
            "overdue": self.overdue,
            "not_yet_due": self.not_yet_due,
            "completed": self.completed,
            "median_working_days_to_first_follow_up": self.median,
        }


@dataclass(frozen=True)
class Report:
    date_from: date
    date_to: date
    generated_at: datetime
    rows: tuple[Row, ...]  # agencies, then the total

    def as_dicts(self) -> list[dict[str, Any]]:
        return [r.as_dict() for r in self.rows]


def bounds(date_from: date, date_to: date) -> tuple[datetime, datetime]:
    """The UTC instants [start, end) of WITA dates ``date_from``..``date_to`` inclusive."""
    start = datetime.combine(date_from, time(0), tzinfo=WITA).astimezone(UTC)
    end = datetime.combine(date_to + timedelta(days=1), time(0), tzinfo=WITA).astimezone(UTC)
    return start, end


def current_month(now: datetime) -> tuple[date, date]:
    today = now.astimezone(WITA).date()
    first = today.replace(day=1)
    nxt = (first + timedelta(days=32)).replace(day=1)
    return first, nxt - timedelta(days=1)


def build(
    facts: Sequence[Facts],
    mappings: Mappings,
    date_from: date,
    date_to: date,
    now: datetime,
    agency: str | None = None,
) -> Report:
    rows: dict[str, Row] = {}
    for a in mappings.agencies:
        if agency is None or a.code == agency:
            rows[a.code] = Row(a.code, a.name)
    total = Row(TOTAL, "Total")
    for f in facts:
        p = f.first_response()
        if agency is not None and p.agency != agency:
            continue
        row = rows.setdefault(p.agency, Row(p.agency, p.agency))
        for r in (row, total):
            r.received += 1
            if p.first_follow_up_at is not None:
                if p.on_time:
                    r.followed_up_on_time += 1
                else:
                    r.followed_up_late += 1
                r.days.append(
                    working_days_between(p.started_at, p.first_follow_up_at, mappings.holidays)
                )
            elif p.due_at < now:
                r.overdue += 1
            else:
                r.not_yet_due += 1
            r.completed += f.lapor_status in (LaporStatus.SELESAI, LaporStatus.DITUTUP)
    return Report(date_from, date_to, now, (*rows.values(), total))


# -- formats ----------------------------------------------------------------------------------


def _cell(v: Any) -> str:
    return "" if v is None else str(v)


def as_csv(rep: Report) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(COLUMNS)
    for d in rep.as_dicts():
        w.writerow([_cell(d[c]) for c in COLUMNS])
    return out.getvalue()


def as_json(rep: Report) -> str:
    return (
        json.dumps(
            {
                "from": rep.date_from.isoformat(),
                "to": rep.date_to.isoformat(),
                "dates": "WITA calendar dates of LAPOR!'s dibuat, both inclusive",
                "generated_at": rep.generated_at.astimezone(WITA).isoformat(),
                "columns": list(COLUMNS),
                "rows": rep.as_dicts(),
            },
            ensure_ascii=False,
            indent=2,
        )
        + "\n"
    )


def as_table(rep: Report) -> str:
    heads = [
        "AGENCY",
        "RECEIVED",
        "ON_TIME",
        "LATE",
        "OVERDUE",
        "NOT_YET_DUE",
        "COMPLETED",
        "MEDIAN_WD",
    ]
    body = [[_cell(d[c]) if d[c] is not None else "-" for c in COLUMNS] for d in rep.as_dicts()]
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(heads)]
    lines = [
        f"Report {rep.date_from} .. {rep.date_to} (received, WITA dates); "
        f"made {human(rep.generated_at)}",
        "  ".join(
            h.ljust(widths[i]) if i == 0 else h.rjust(widths[i]) for i, h in enumerate(heads)
        ),
    ]
    for r in body:
        lines.append(
            "  ".join(v.ljust(widths[i]) if i == 0 else v.rjust(widths[i]) for i, v in enumerate(r))
        )
    return "\n".join(lines) + "\n"


COLORS = {"on_time": "#2e7d32", "late": "#ef6c00", "overdue": "#c62828"}


def tanggal(d: date) -> str:
    return tanggal_panjang(d, weekday=False)


def _chart(rows: Sequence[Row]) -> str:
    """One horizontal stacked bar per agency: on time, late, overdue (inline SVG)."""
    label_w, bar_w, row_h, top = 330, 520, 34, 34
    scale = max([r.followed_up_on_time + r.followed_up_late + r.overdue for r in rows] + [1])
    height = top + row_h * len(rows) + 10
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="chart" '
        f'width="{label_w + bar_w + 60}" height="{height}" '
        f'viewBox="0 0 {label_w + bar_w + 60} {height}" shape-rendering="crispEdges" '
        f'aria-label="Grafik tindak lanjut per OPD">'
    ]
    legend = (("on_time", "Tepat waktu"), ("late", "Terlambat"), ("overdue", "Melewati batas"))
    x = label_w
    for key, text in legend:
        parts.append(
            f'<rect x="{x}" y="6" width="14" height="14" fill="{COLORS[key]}"/>'
            f'<text x="{x + 20}" y="18" font-size="13">{text}</text>'
        )
        x += 150
    for i, r in enumerate(rows):
        y = top + i * row_h
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 19}" font-size="13" text-anchor="end">'
            f"{html.escape(r.agency)}</text>"
        )
        x = label_w
        for key, n in (
            ("on_time", r.followed_up_on_time),
            ("late", r.followed_up_late),
            ("overdue", r.overdue),
        ):
            w = round(bar_w * n / scale)
            if w:
                parts.append(
                    f'<rect class="bar {key}" data-agency="{html.escape(r.agency)}" '
                    f'data-count="{n}" x="{x}" y="{y + 4}" width="{w}" height="22" '
                    f'fill="{COLORS[key]}"><title>{n}</title></rect>'
                )
            x += w
        parts.append(
            f'<text x="{x + 6}" y="{y + 19}" font-size="12">'
            f"{r.followed_up_on_time}/{r.followed_up_late}/{r.overdue}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


HEADINGS = (
    "OPD",
    "Diterima",
    "Ditindaklanjuti tepat waktu",
    "Ditindaklanjuti terlambat",
    "Melewati batas waktu",
    "Belum jatuh tempo",
    "Selesai",
    "Median hari kerja sampai tindak lanjut pertama",
)


def as_html(rep: Report) -> str:
    agencies = [r for r in rep.rows if r.agency != TOTAL]
    cells = []
    for r in rep.rows:
        d = r.as_dict()
        name = "Jumlah" if r.agency == TOTAL else f"{html.escape(r.name)} ({html.escape(r.agency)})"
        nums = "".join(f"<td>{'-' if d[c] is None else d[c]}</td>" for c in COLUMNS[1:])
        cls = ' class="total"' if r.agency == TOTAL else ""
        cells.append(f'<tr{cls}><th scope="row">{name}</th>{nums}</tr>')
    head = "".join(f'<th scope="col">{h}</th>' for h in HEADINGS)
    period = f"{tanggal(rep.date_from)} s.d. {tanggal(rep.date_to)}"
    made = human(rep.generated_at)
    return f"""<!DOCTYPE html>
<html lang="id">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Tindak Lanjut Pengaduan SP4N-LAPOR! Kabupaten Mahakam Ulu, {period}</title>
<style>
body {{ font-family: "DejaVu Sans", Arial, sans-serif; margin: 2em; color: #222; }}
h1 {{ font-size: 1.5em; margin-bottom: 0.2em; }}
h2 {{ font-size: 1.15em; margin-top: 1.6em; }}
p.meta {{ color: #555; margin: 0.2em 0; }}
table {{ border-collapse: collapse; margin-top: 0.6em; }}
th, td {{ border: 1px solid #bbb; padding: 0.35em 0.6em; }}
td {{ text-align: right; }}
thead th {{ background: #eef2f5; font-size: 0.9em; }}
tbody th {{ text-align: left; font-weight: normal; }}
tr.total th, tr.total td {{ font-weight: bold; background: #f7f7f7; }}
dl dt {{ font-weight: bold; margin-top: 0.5em; }}
</style>
</head>
<body>
<h1>Tindak Lanjut Pengaduan SP4N-LAPOR!</h1>
<p class="meta">Pemerintah Kabupaten Mahakam Ulu &middot; informasi berkala</p>
<p class="meta">Periode pengaduan diterima: <strong>{period}</strong> (tanggal WITA)</p>
<p class="meta">Dibuat: <strong>{made}</strong></p>
<h2>Grafik tindak lanjut pertama per OPD</h2>
{_chart(agencies)}
<h2>Rekapitulasi per OPD</h2>
<table>
<thead><tr>{head}</tr></thead>
<tbody>
{"".join(cells)}
</tbody>
</table>
<h2>Keterangan</h2>
<dl>
<dt>Diterima</dt><dd>Pengaduan yang masuk ke LAPOR! pada tanggal dalam periode (WITA).</dd>
<dt>Ditindaklanjuti tepat waktu / terlambat</dt><dd>Tindak lanjut pertama oleh unit OPD
tampil di LAPOR! paling lambat / sesudah batas waktu tindak lanjut (5 hari kerja sejak
disposisi, atau batas yang ditetapkan LAPOR!).</dd>
<dt>Melewati batas waktu</dt><dd>Belum ada tindak lanjut di LAPOR! dan batas waktunya
sudah lewat.</dd>
<dt>Belum jatuh tempo</dt><dd>Belum ada tindak lanjut dan batas waktunya belum lewat.</dd>
<dt>Selesai</dt><dd>Status di LAPOR! selesai atau ditutup.</dd>
</dl>
</body>
</html>
"""


def render(rep: Report, fmt: str) -> str:
    return {"table": as_table, "csv": as_csv, "json": as_json, "html": as_html}[fmt](rep)
