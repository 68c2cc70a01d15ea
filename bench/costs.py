"""The whole cost of a run: PostgreSQL's CPU beside the server's, and the writer's batch sizes.

The server is pinned to one core and PostgreSQL floats, so on two cores the
database's CPU competes with the server's and the generator's: a figure per
delivered message for each of the three says where a run's CPU went.

PostgreSQL's CPU is the postmaster's own, its live children's (backends,
walwriter, checkpointer...) and what its reaped children left in its
`children_user`/`children_system` times: a backend that ends inside a run
still counts. It is every database's load on that server, not only the
bench's: on a shared PostgreSQL, other work counts too (the JSON says which).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

BATCH_METRIC = "secure_link_send_batch_size"  # secure_link/ops/metrics.py: drafts per group commit


class PostgresCpu:
    """CPU seconds of one PostgreSQL server: the postmaster and every process it forked."""

    def __init__(self, postmaster: psutil.Process, found_by: str) -> None:
        self.postmaster, self.found_by = postmaster, found_by

    def seconds(self) -> float:
        """A child that exits between the two reads is missed once: it is one backend's slice."""
        times = self.postmaster.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        for child in self.postmaster.children():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                spent = child.cpu_times()
                total += spent.user + spent.system
        return float(total)

    def describe(self) -> dict[str, Any]:
        """For the JSON's conditions: which server was weighed and how it was found."""
        return {"postmaster_pid": self.postmaster.pid, "found_by": self.found_by,
                "cores": sorted(self.postmaster.cpu_affinity() or []),  # floating: every core the machine has
                "scope": "every process of this PostgreSQL server: other databases' load counts too"}


async def find_postgres(pg_url: str) -> PostgresCpu | None:
    """The postmaster serving `pg_url`, when it runs on this machine; None when it cannot be seen.

    A backend is forked by the postmaster, so our own backend's parent is it; if
    that PID is not a PostgreSQL process here (another host, another PID
    namespace), the data directory's postmaster.pid names it instead.
    """
    connection = await asyncpg.connect(pg_url)
    try:  # the backend is looked at while it lives: once the connection closes, it is gone
        backend = await connection.fetchval("SELECT pg_backend_pid()")
        data_directory = await connection.fetchval("SELECT current_setting('data_directory', true)")
        with contextlib.suppress(psutil.Error):
            parent = psutil.Process(backend).parent()
            if parent is not None and _is_postgres(parent):
                return PostgresCpu(parent, "parent of pg_backend_pid()")
    finally:
        await connection.close()
    with contextlib.suppress(OSError, ValueError, psutil.Error):
        pid = int((Path(data_directory) / "postmaster.pid").read_text().split()[0])
        if _is_postgres(process := psutil.Process(pid)):
            return PostgresCpu(process, "data_directory/postmaster.pid")
    return None


def _is_postgres(process: psutil.Process) -> bool:
    return "postgres" in process.name() or any("postgres" in part for part in process.cmdline()[:1])


async def scrape_batches(addresses: list[str]) -> dict[str, float] | None:
    """The writer's batch-size histogram summed over the servers' /metrics (cumulative counts by `le`).

    None when no server exports it (the echo app answers /metrics with 404).
    """
    found: dict[str, float] = {}
    async with httpx.AsyncClient(timeout=5, trust_env=False) as http:
        for address in addresses:
            response = await http.get(f"http://{address}/metrics")
            if response.status_code != 200:
                continue
            for key, value in _histogram(response.text).items():
                found[key] = found.get(key, 0.0) + value
    return found or None


def _histogram(text: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != BATCH_METRIC:
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                values[f"le_{sample.labels['le']}"] = sample.value
            elif sample.name.endswith(("_sum", "_count")):
                values[sample.name.rsplit("_", 1)[1]] = sample.value
    return values


def batch_delta(before: dict[str, float] | None, after: dict[str, float] | None) -> dict[str, Any] | None:
    """Commits in a run by batch size: drafts per commit, counted per bucket (not cumulative)."""
    if not before or not after:
        return None
    bounds = sorted((k for k in after if k.startswith("le_")), key=lambda k: float(k[3:]))
    counts, below = {}, 0.0
    for key in bounds:
        cumulative = after[key] - before.get(key, 0.0)
        counts[_label(key[3:])] = int(cumulative - below)
        below = cumulative
    commits = after.get("count", 0.0) - before.get("count", 0.0)
    drafts = after.get("sum", 0.0) - before.get("sum", 0.0)
    return {"commits": int(commits), "drafts": int(drafts), "mean": drafts / commits if commits else None,
            "buckets": counts}


def _label(le: str) -> str:
    return "+Inf" if le == "+Inf" else f"<={float(le):g}"
