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

Runs = dict[str, list[dict[str, Any]]]
# label, unit, project (scenario, field path), limit label, limit (scenario, field path)
ROWS: list[tuple[str, str, tuple[str, ...], str, tuple[str, ...]]] = [
    ("delivered, 1 worker, closed loop", "msg/s", ("closed", "delivered_per_s"),
     "echo app", ("echo_closed", "delivered_per_s")),
    ("acked, 1 worker, closed loop", "msg/s", ("closed", "acked_per_s"),
     "insert_messages, 256/commit", ("commit_256", "per_s")),
    ("server CPU per message, closed loop", "µs", ("closed", "server_us_per_msg"),
     "echo app", ("echo_closed", "server_us_per_msg")),
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
    runs = raw.get(scenario)
    if not runs:
        return None
    values = []
    for run in runs:
        value: Any = run
        for key in path:
            value = value[key]
        values.append(float(value))
    return {"median": median(values), "min": min(values), "max": max(values), "runs": values}


def progress(summary: dict[str, Any]) -> str:
    """One line per run, printed as it finishes."""
    return (f"sent {summary['sent']}, delivered {summary['delivered_per_s']:.0f}/s, "
            f"p50/p99 {summary['delivery_ms']['p50']:.1f}/{summary['delivery_ms']['p99']:.1f} ms, "
            f"lost {summary['lost']}, errors {summary['errors']}, server cpu {summary.get('server_cpu_pct', '-')}%")


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
        project, bound = figure(raw, *mine), figure(raw, *limit)
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
                       **{f"{kind}_{q}": figure(raw, key, f"{kind}_ms", q)
                          for kind in ("ack", "delivery") for q in ("p50", "p95", "p99", "max")},
                       "errors": sum(r["errors"] for r in raw[key])})
    return points


REST_SEND_BEFORE = 2039  # req/s, docs/performance.md before group commit (issue 10's baseline)


def targets(raw: Runs, rows: list[dict[str, Any]], lost: int, idle_target: int) -> list[dict[str, Any]]:
    """Issue 10's targets, met or not, from the medians."""
    by = {row["figure"]: row for row in rows}

    def project(label: str) -> float:
        return (by[label]["project"] or {}).get("median", math.nan)

    ratio = by["delivered, 1 worker, closed loop"]["ratio"]
    cpu = project("server CPU per message, closed loop")
    rest = project("POST /api/send-message/")
    p99 = project("delivery p99 at 50% of max")
    held = project("idle sockets held, 1 worker")
    rss, rss_ratio = project("RSS per idle socket"), by["RSS per idle socket"]["ratio"]
    return [
        {"target": "delivered msg/s >= 40% of the echo app's", "value": f"{100 * ratio:.0f}%", "met": ratio >= 0.4},
        {"target": "server CPU per message <= 120 µs", "value": f"{cpu:.0f} µs", "met": cpu <= 120},
        {"target": f"POST /api/send-message/ >= 2 x {REST_SEND_BEFORE:,} req/s", "value": f"{rest:,.0f} req/s",
         "met": rest >= 2 * REST_SEND_BEFORE},
        {"target": "p99 delivery < 25 ms at half the saturation rate", "value": f"{p99:.1f} ms", "met": p99 < 25},
        {"target": f"{idle_target:,} idle sockets on one worker, RSS each <= 1.10 x the echo app's",
         "value": f"{held:,.0f} held, {rss:.1f} KiB each ({rss_ratio:.2f} x)",
         "met": held >= idle_target and rss_ratio <= 1.10},
        {"target": "zero lost messages", "value": str(lost), "met": lost == 0},
    ]


def print_tables(rows: list[dict[str, Any]], points: list[dict[str, Any]], goals: list[dict[str, Any]]) -> None:
    """The terminal table: figure, median, spread, limit, ratio."""
    print(f"\n{'figure':<38}{'median':>10} {'min–max':<17}{'unit':<8}{'limit':<24}{'limit':>10}{'ratio':>8}")
    for row in rows:
        value, spread = _cell(row["project"])
        bound, _ = _cell(row["limit_value"])
        ratio = "-" if math.isnan(row["ratio"]) else f"{row['ratio']:.2f}"
        print(f"{row['figure']:<38}{value:>10} {spread:<17}{row['unit']:<8}{row['limit']:<24}{bound:>10}{ratio:>8}")
    print(f"\n{'offered':>8} {'of max':>7} {'delivered':>10} {'ack p50':>8} {'ack p99':>8} "
          f"{'dlv p50':>8} {'dlv p99':>8} {'dlv max':>8} {'errors':>7}   (msg/s, ms; medians)")
    for p in points:
        cells = [_cell(p[k])[0] for k in ("offered_per_s", "delivered_per_s", "ack_p50", "ack_p99",
                                          "delivery_p50", "delivery_p99", "delivery_max")]
        print(f"{cells[0]:>8} {p['fraction']:>6.0%} {cells[1]:>10} " + " ".join(f"{c:>8}" for c in cells[2:])
              + f" {p['errors']:>7}")
    print()
    for goal in goals:
        print(f"{'MET ' if goal['met'] else 'NOT '} {goal['target']}: {goal['value']}")


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
    goals = targets(raw, rows, lost, idle_target)
    print_tables(rows, points, goals)
    results.mkdir(parents=True, exist_ok=True)
    echo = figure(raw, "echo_curve0.50", "delivery_ms", "p99")
    half = figure(raw, "echo_curve0.50", "offered_per_s")
    if points:
        plot(points, {"rate": half["median"], "p99": echo["median"]} if echo and half else None,
             results / "latency.png")
    document = {"profile": profile, "started_at": started["at"], "machine": started["machine"],
                "versions": started.get("versions"), "conditions": started.get("conditions"),
                "elapsed_s": round(time.perf_counter() - started["clock"], 1), "lost": lost,
                "errors": sum(r["errors"] for r in chat_runs), "figures": rows, "curve": points,
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


def render_profile(session_path: Path, results: Path, top: int = 25) -> None:
    """Where the server's samples went: the call tree, inclusive time per function, self time per package."""
    from pyinstrument.renderers import ConsoleRenderer, JSONRenderer
    from pyinstrument.session import Session

    session = Session.load(session_path)
    results.mkdir(parents=True, exist_ok=True)
    (results / "profile.json").write_text(JSONRenderer().render(session))
    tree = session_path.with_name("tree.txt")
    tree.write_text(ConsoleRenderer(time="percent_of_total").render(session))
    inclusive, by_package = _aggregate(session.frame_records)
    total = sum(t for _, t in session.frame_records)
    print(f"profile: {session.duration:.1f} s wall, {session.cpu_time:.1f} s CPU; inclusive share of samples:")
    for name, spent in sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {100 * spent / total:5.1f}%  {name}")
    print("self time by package (the frame on top of the stack):")
    for name, spent in sorted(by_package.items(), key=lambda kv: -kv[1])[:12]:
        print(f"  {100 * spent / total:5.1f}%  {name}")
    print(f"\ncall tree: {tree}; pyinstrument JSON: {results / 'profile.json'}")


def _aggregate(records: list[tuple[list[str], float]]) -> tuple[dict[str, float], dict[str, float]]:
    """Inclusive time of the project's and asyncpg's functions; self time by package."""
    inclusive: dict[str, float] = {}
    by_package: dict[str, float] = {}
    for stack, spent in records:
        seen = set()
        for frame in stack:
            function, path = frame.split("\x00")[:2]
            if ("/secure_link/" in path or "/asyncpg/" in path) and function not in seen:
                seen.add(function)
                key = f"{Path(path).parent.name}/{Path(path).name}:{function}"
                inclusive[key] = inclusive.get(key, 0.0) + spent
        leaf = stack[-1].split("\x00")[1]
        package = leaf.split("site-packages/")[1].split("/")[0] if "site-packages/" in leaf else (
            "secure_link" if "/secure_link/" in leaf else Path(leaf).parent.name or leaf)
        by_package[package] = by_package.get(package, 0.0) + spent
    return inclusive, by_package
