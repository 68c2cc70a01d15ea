"""Turn run summaries into the figures: a terminal table, JSON, a PNG, the targets.

Each figure is the median of its runs with the spread (min–max) beside it, and
each project figure sits next to the limit it is bounded by, as a ratio.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from importlib import metadata
from pathlib import Path
from typing import Any
from collections.abc import Sequence

from .targets import targets

Runs = dict[str, list[dict[str, Any]]]
# label, unit, project (scenario, field path), limit label, limit (scenario, field path; empty: none)
ROWS: list[tuple[str, str, tuple[str, ...], str, tuple[str, ...]]] = [
    ("delivered, 1 worker, closed loop", "msg/s", ("closed", "delivered_per_s"),
     "echo app", ("echo_closed", "delivered_per_s")),
    ("acked, 1 worker, closed loop", "msg/s", ("closed", "acked_per_s"),
     "insert_messages, 256/commit", ("commit_256", "per_s")),
    ("server CPU per message, closed loop", "µs", ("closed", "server_us_per_msg"),
     "echo app", ("echo_closed", "server_us_per_msg")),
    ("server CPU per delivered msg", "µs", ("closed", "cpu_us_per_delivered", "server"),
     "echo app", ("echo_closed", "cpu_us_per_delivered", "server")),
    ("PostgreSQL CPU per delivered msg", "µs", ("closed", "cpu_us_per_delivered", "postgres"),
     "the server's", ("closed", "cpu_us_per_delivered", "server")),
    ("generator CPU per delivered msg", "µs", ("closed", "cpu_us_per_delivered", "generator"),
     "same, against echo", ("echo_closed", "cpu_us_per_delivered", "generator")),
    ("server process busy, closed loop", "% core", ("closed", "server_cpu_pct"),
     "echo app", ("echo_closed", "server_cpu_pct")),
    ("writer batch, mean, closed loop", "drafts", ("closed", "batch_sizes", "mean"), "", ()),
    ("delivery p50 at 10% of max", "ms", ("curve0.10", "delivery_ms", "p50"), "", ()),
    ("delivery p99 at 10% of max", "ms", ("curve0.10", "delivery_ms", "p99"), "", ()),
    ("open loop at 80%: delivered", "%", ("curve0.80", "delivered_pct"), "", ()),
    ("delivery p99 at 80% of max", "ms", ("curve0.80", "delivery_ms", "p99"), "", ()),
    ("delivery p50 at 50% of max", "ms", ("curve0.50", "delivery_ms", "p50"),
     "echo app, same rate", ("echo_curve0.50", "delivery_ms", "p50")),
    ("delivery p99 at 50% of max", "ms", ("curve0.50", "delivery_ms", "p99"),
     "echo app, same rate", ("echo_curve0.50", "delivery_ms", "p99")),
    ("ack p99 at 50% of max", "ms", ("curve0.50", "ack_ms", "p99"),
     "echo app, same rate", ("echo_curve0.50", "ack_ms", "p99")),
    ("idle sockets held, 1 worker", "sockets", ("idle", "held"), "echo app", ("echo_idle", "held")),
    ("RSS per idle socket", "KiB", ("idle", "rss_per_conn_kib"), "echo app", ("echo_idle", "rss_per_conn_kib")),
    ("socket opens (auth+subscribe)", "/s", ("idle", "connect_per_s"), "echo app", ("echo_idle", "connect_per_s")),
    ("socket opens, after the chat runs", "/s", ("opens_loaded", "connect_per_s"),
     "same, empty table", ("idle", "connect_per_s")),
    ("GET /api/user-profile/", "req/s", ("rest_profile", "requests_per_s"),
     "echo app", ("echo_rest_profile", "requests_per_s")),
    ("POST /api/send-message/", "req/s", ("rest_send", "requests_per_s"),
     "insert_messages, 256/commit", ("commit_256", "per_s")),
    ("POST send, server CPU per request", "µs", ("rest_send", "cpu_us_per_request", "server"),
     "GET profile's", ("rest_profile", "cpu_us_per_request", "server")),
    ("POST send, PostgreSQL CPU per req.", "µs", ("rest_send", "cpu_us_per_request", "postgres"),
     "GET profile's", ("rest_profile", "cpu_us_per_request", "postgres")),
    ("POST send, writer batch mean", "drafts", ("rest_send", "batch_sizes", "mean"), "", ()),
    ("POST send, every id a retry", "req/s", ("rest_send_retry", "requests_per_s"),
     "fresh ids", ("rest_send", "requests_per_s")),
    ("insert_messages, 1 draft a commit", "rows/s", ("commit_1", "per_s"),
     "256 a commit", ("commit_256", "per_s")),
    ("insert_messages, 16 drafts a commit", "rows/s", ("commit_16", "per_s"),
     "256 a commit", ("commit_256", "per_s")),
    ("insert_messages, 64 drafts a commit", "rows/s", ("commit_64", "per_s"),
     "256 a commit", ("commit_256", "per_s")),
    ("delivered, 2 workers, PG fan-out", "msg/s", ("multi_pg", "delivered_per_s"),
     "NOTIFY round trips", ("notify", "per_s")),
    ("delivered, 2 workers, Redis fan-out", "msg/s", ("multi_redis", "delivered_per_s"),
     "PUBLISH round trips", ("redis_rt", "per_s")),
]


def median(values: Sequence[float]) -> float:
    clean = [v for v in values if not math.isnan(v)]
    return statistics.median(clean) if clean else math.nan


def figure(raw: Runs, scenario: str, *path: str) -> dict[str, Any] | None:
    """Median and spread of one field over a scenario's runs; None when it did not run."""
    values = []
    for run in raw.get(scenario, []):
        value: Any = run
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None:  # a cost that could not be measured (PostgreSQL elsewhere, no /metrics)
            values.append(float(value))
    if not values:
        return None
    return {"median": median(values), "min": min(values), "max": max(values), "runs": values}


def progress(summary: dict[str, Any]) -> str:
    """One line per run, printed as it finishes."""
    return (f"sent {summary['sent']}, delivered {summary['delivered_per_s']:.0f}/s, "
            f"p50/p99 {summary['delivery_ms']['p50']:.1f}/{summary['delivery_ms']['p99']:.1f} ms, "
            f"lost {summary['lost']}, errors {summary['errors']}, server cpu {summary.get('server_cpu_pct', '-')}%"
            f"{_costs(summary, 'delivered')}")


def rest_progress(result: dict[str, Any]) -> str:
    """One line per REST run: the rate, what the answers were, and where the CPU went."""
    return (f"{result['requests_per_s']:.0f} req/s, statuses {result['statuses']}, "
            f"server cpu {result.get('server_cpu_pct', '-')}%{_costs(result, 'request')}")


def _costs(summary: dict[str, Any], unit: str) -> str:
    spent = summary.get(f"cpu_us_per_{unit}") or {}
    parts = [f"{name} {value:.0f}" for name, value in spent.items() if value is not None]
    batches = summary.get("batch_sizes") or {}
    mean = f", batch mean {batches['mean']:.1f}" if batches.get("mean") else ""
    return f"; µs per {unit}: {', '.join(parts)}{mean}" if parts else mean


def _num(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}"


def _cell(fig: dict[str, Any] | None) -> tuple[str, str]:
    if fig is None:
        return "skipped", ""
    return _num(fig["median"]), f"{_num(fig['min'])}–{_num(fig['max'])}"


def figures(raw: Runs) -> list[dict[str, Any]]:
    """The table's rows, with the ratio project / limit."""
    rows = []
    for label, unit, mine, limit_label, limit in ROWS:
        project, bound = figure(raw, *mine), figure(raw, *limit) if limit else None
        ratio = project["median"] / bound["median"] if project and bound and bound["median"] else math.nan
        rows.append({"figure": label, "unit": unit, "project": project, "limit": limit_label,
                     "limit_value": bound, "ratio": ratio})
    return rows


def curve(raw: Runs) -> list[dict[str, Any]]:
    """The latency curve: one point per offered rate."""
    points = []
    for key in sorted(k for k in raw if k.startswith("curve")):
        points.append({"fraction": float(key[5:]), "offered_per_s": figure(raw, key, "offered_per_s"),
                       "delivered_per_s": figure(raw, key, "delivered_per_s"),
                       "delivered_pct": figure(raw, key, "delivered_pct"),
                       **{f"{kind}_{q}": figure(raw, key, f"{kind}_ms", q)
                          for kind in ("ack", "delivery") for q in ("p50", "p95", "p99", "max")},
                       "errors": sum(r["errors"] for r in raw[key])})
    return points


def batches(raw: Runs) -> dict[str, dict[str, Any]]:
    """The writer's batch sizes over all runs of a scenario: commits per bucket, summed."""
    found: dict[str, dict[str, Any]] = {}
    for key, runs in raw.items():
        deltas = [r["batch_sizes"] for r in runs if r.get("batch_sizes")]
        if not sum(d["commits"] for d in deltas):  # the echo app, or a run that sent nothing
            continue
        buckets: dict[str, int] = {}
        for delta in deltas:
            for bucket, count in delta["buckets"].items():
                buckets[bucket] = buckets.get(bucket, 0) + count
        commits, drafts = sum(d["commits"] for d in deltas), sum(d["drafts"] for d in deltas)
        found[key] = {"commits": commits, "drafts": drafts, "mean": drafts / commits if commits else None,
                      "buckets": buckets}
    return found


def print_tables(rows: list[dict[str, Any]], points: list[dict[str, Any]], goals: list[dict[str, Any]],
                 histograms: dict[str, dict[str, Any]]) -> None:
    """The terminal table: figure, median, spread, limit, ratio."""
    print(f"\n{'figure':<38}{'median':>10} {'min–max':<17}{'unit':<8}{'limit':<24}{'limit':>10}{'ratio':>8}")
    for row in rows:
        value, spread = _cell(row["project"])
        bound = _cell(row["limit_value"])[0] if row["limit"] else ""
        ratio = "-" if math.isnan(row["ratio"]) else f"{row['ratio']:.2f}"
        print(f"{row['figure']:<38}{value:>10} {spread:<17}{row['unit']:<8}{row['limit']:<24}{bound:>10}{ratio:>8}")
    print(f"\n{'offered':>8} {'of max':>7} {'delivered':>10} {'dlv %':>6} {'ack p50':>8} {'ack p99':>8} "
          f"{'dlv p50':>8} {'dlv p99':>8} {'dlv max':>8} {'errors':>7}   (msg/s, ms; medians)")
    for p in points:
        cells = [_cell(p[k])[0] for k in ("offered_per_s", "delivered_per_s", "delivered_pct", "ack_p50",
                                          "ack_p99", "delivery_p50", "delivery_p99", "delivery_max")]
        print(f"{cells[0]:>8} {p['fraction']:>6.0%} {cells[1]:>10} {cells[2]:>6} "
              + " ".join(f"{c:>8}" for c in cells[3:]) + f" {p['errors']:>7}")
    print("\nwriter batch sizes (drafts per commit; share of commits, all runs):")
    for key, found in histograms.items():
        shares = " ".join(f"{b} {100 * n / max(1, found['commits']):.0f}%" for b, n in found["buckets"].items() if n)
        print(f"  {key:<16} {found['commits']:>7} commits, mean {found['mean'] or 0:.1f}: {shares}")
    print()
    for goal in goals:
        mark = {True: "MET ", False: "NOT ", None: "INFO"}[goal["met"]]
        print(f"{mark} {goal['target']}: {goal['value']}")


def plot(points: list[dict[str, Any]], echo: dict[str, Any] | None, path: Path) -> None:
    """p50/p99 delivery latency against offered rate (Agg: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(figsize=(7, 4.5))
    x = [p["offered_per_s"]["median"] for p in points]
    for q, style in (("p50", "o-"), ("p99", "s-")):
        y = [p[f"delivery_{q}"]["median"] for p in points]
        low = [a - p[f"delivery_{q}"]["min"] for a, p in zip(y, points)]
        high = [p[f"delivery_{q}"]["max"] - a for a, p in zip(y, points)]
        axes.errorbar(x, y, yerr=[low, high], fmt=style, capsize=3, label=f"delivery {q} (min–max of runs)")
    if echo:
        axes.plot([echo["rate"]], [echo["p99"]], "k^", label="echo app p99 at 50%")
    axes.axhline(25, color="grey", linestyle="--", linewidth=1, label="target: p99 < 25 ms at 50%")
    axes.set_yscale("log")
    axes.set_xlabel("offered messages/s (open loop)")
    axes.set_ylabel("send → delivered (ms)")
    axes.set_title("Secure Link, one worker: delivery latency against offered rate")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def machine() -> dict[str, Any]:
    """Cores, CPU model and RAM: the figures mean little without them."""
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    mem_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal"))
    return {"cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)), "cpu": model,
            "ram_gib": round(mem_kib / 2**20, 1), "kernel": platform.release()}


async def versions(pg_url: str, redis_url: str | None) -> dict[str, str]:
    """Python, the libraries under test, and the servers they talk to."""
    import asyncpg

    found = {"python": platform.python_version()}
    for package in ("uvicorn", "starlette", "asyncpg", "websockets", "httpx", "uvloop", "httptools"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "absent"
    connection = await asyncpg.connect(pg_url)
    try:
        found["postgresql"] = await connection.fetchval("SHOW server_version")
    finally:
        await connection.close()
    if redis_url:
        import redis.asyncio as redis

        client = redis.from_url(redis_url)
        found["redis"] = (await client.info("server"))["redis_version"]
        await client.aclose()
    return found


def publish(raw: Runs, profile: str, started: dict[str, Any], results: Path, idle_target: int) -> int:
    """Print, save JSON and the PNG; exit status 1 when any message was lost."""
    rows, points = figures(raw), curve(raw)
    chat_runs = [r for runs in raw.values() for r in runs if "lost" in r]
    lost = sum(r["lost"] for r in chat_runs)
    duplicated = sum(r["duplicates"] for r in chat_runs)
    goals = targets(raw, rows, lost, duplicated, idle_target)
    histograms = batches(raw)
    print_tables(rows, points, goals, histograms)
    results.mkdir(parents=True, exist_ok=True)
    echo = figure(raw, "echo_curve0.50", "delivery_ms", "p99")
    half = figure(raw, "echo_curve0.50", "offered_per_s")
    if points:
        plot(points, {"rate": half["median"], "p99": echo["median"]} if echo and half else None,
             results / "latency.png")
    document = {"profile": profile, "started_at": started["at"], "machine": started["machine"],
                "versions": started.get("versions"), "conditions": started.get("conditions"),
                "elapsed_s": round(time.perf_counter() - started["clock"], 1), "lost": lost,
                "errors": sum(r["errors"] for r in chat_runs), "duplicated": duplicated, "figures": rows,
                "curve": points, "batch_sizes": histograms,
                "targets": goals, "runs": raw}
    text = json.dumps(_strict(document), indent=1, default=str, allow_nan=False)
    for name in ("latest.json", f"{profile}.json"):
        (results / name).write_text(text)
    print(f"\n{profile} run: {document['elapsed_s']} s; wrote {results / 'latest.json'} and latency.png")
    if lost:
        print(f"FAILED: {lost} acknowledged messages were never delivered")
    return 1 if lost else 0


def _strict(value: Any) -> Any:
    """NaN (a figure that could not be computed) becomes null: strict JSON for any reader."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value
