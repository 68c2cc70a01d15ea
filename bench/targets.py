"""Issue 28's targets (and issue 10's that still hold), met or not, from a run's medians.

A target whose baseline was never measured (p50 at 10 % load) is printed as
INFO with its value: the next run has something to compare with.
"""

from __future__ import annotations

import math
from typing import Any

Runs = dict[str, list[dict[str, Any]]]
REST_SEND_TARGET = 4000  # req/s, one worker (issue 28)
REST_SPREAD = 0.20  # the three REST send runs within 20 % of each other


def spread(values: list[float]) -> float:
    """(max - min) / min: how far apart the runs are; 0 for a single run."""
    return (max(values) - min(values)) / min(values) if values and min(values) > 0 else math.nan


def targets(raw: Runs, rows: list[dict[str, Any]], lost: int, duplicated: int,
            idle_target: int) -> list[dict[str, Any]]:
    """One line per target: what it asks, the value measured, met (None: no baseline to judge by)."""
    by = {row["figure"]: row for row in rows}

    def project(label: str) -> float:
        return float((by[label]["project"] or {}).get("median", math.nan))

    ratio = by["delivered, 1 worker, closed loop"]["ratio"]
    cpu, busy = project("server CPU per delivered msg"), project("server process busy, closed loop")
    delivered80, p99_80 = project("open loop at 80%: delivered"), project("delivery p99 at 80% of max")
    rest = project("POST /api/send-message/")
    rest_runs = [r["requests_per_s"] for r in raw.get("rest_send", [])]
    held, rss_ratio = project("idle sockets held, 1 worker"), by["RSS per idle socket"]["ratio"]
    return [
        {"target": "delivered msg/s >= 40% of the echo app's", "value": f"{100 * ratio:.0f}%", "met": ratio >= 0.4},
        {"target": "server CPU per delivered message <= 100 µs", "value": f"{cpu:.0f} µs", "met": cpu <= 100},
        {"target": "server's core busy >= 95% at saturation (closed loop)", "value": f"{busy:.0f}%",
         "met": busy >= 95},
        {"target": "open loop at 80% of max: >= 99% delivered, p99 < 50 ms",
         "value": f"{delivered80:.1f}%, p99 {p99_80:.1f} ms", "met": delivered80 >= 99 and p99_80 < 50},
        {"target": f"POST /api/send-message/ >= {REST_SEND_TARGET:,} req/s, runs within 20%",
         "value": f"{rest:,.0f} req/s, spread {100 * spread(rest_runs):.0f}% over {len(rest_runs)} runs",
         "met": rest >= REST_SEND_TARGET and spread(rest_runs) <= REST_SPREAD},
        {"target": "delivery p50 at 10% load no worse than before (not measured before issue 28)",
         "value": f"{project('delivery p50 at 10% of max'):.1f} ms", "met": None},
        {"target": "p99 delivery < 25 ms at half the saturation rate",
         "value": f"{project('delivery p99 at 50% of max'):.1f} ms", "met": project("delivery p99 at 50% of max") < 25},
        {"target": f"{idle_target:,} idle sockets on one worker, RSS each <= 1.10 x the echo app's",
         "value": f"{held:,.0f} held, {project('RSS per idle socket'):.1f} KiB each ({rss_ratio:.2f} x)",
         "met": held >= idle_target and rss_ratio <= 1.10},
        {"target": "zero lost, zero duplicated", "value": f"{lost} lost, {duplicated} duplicated",
         "met": lost == 0 and duplicated == 0},
    ]
