"""Processes under test and the scenarios run against them.

Every server is a subprocess (`python -m secure_link serve` or `python -m
bench.limits echo`) on a free loopback port, pinned to its own core when the
machine has two, polled on /readyz, and stopped by its PID in `finally`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Self
from collections.abc import AsyncIterator, Callable, Sequence

import httpx
import psutil

from secure_link.config import PROJECT_ROOT

from . import costs, loadgen
from .loadgen import TEXT, Account, Peer

SERVER_ENV = {"BCRYPT_ROUNDS": "4", "CHAT_RATE_PER_S": "0", "REGISTER_RATE_PER_MIN": "0",
              "LOGIN_FAILURES_PER_15_MIN": "0", "WS_MAX_SOCKETS_PER_USER": "0",
              "SECRET_PEPPER": "bench-only-pepper", "SECURE_LINK_LOG_LEVEL": "warning"}


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclasses.dataclass
class Process:
    """A server under test: its PID for RSS and CPU, its address, its log."""

    popen: subprocess.Popen[bytes]
    address: str
    log: Path

    @property
    def ps(self) -> psutil.Process:
        return psutil.Process(self.popen.pid)

    def rss(self) -> int:
        return self.ps.memory_info().rss

    def cpu_seconds(self) -> float:
        times = self.ps.cpu_times()
        return times.user + times.system


def _pin(cores: set[int] | None) -> Callable[[], None] | None:
    return (lambda: os.sched_setaffinity(0, cores)) if cores else None


@contextlib.asynccontextmanager
async def running(argv: Sequence[str], env: dict[str, str], cores: set[int] | None,
                  timeout: float = 60.0) -> AsyncIterator[Process]:
    """Start `argv` + `--port P`, wait for /readyz, and stop it by PID however we leave.

    A profiled server gets SIGINT: uvicorn re-raises the signal it caught after
    its graceful shutdown, and only a KeyboardInterrupt lets pyinstrument write.
    """
    port = free_port()
    log = Path(tempfile.mkstemp(prefix="bench-server-", suffix=".log")[1])
    with log.open("wb") as sink:  # noqa: ASYNC230 - a log file, opened once before the server starts
        popen = subprocess.Popen([*argv, "--port", str(port)], env={**os.environ, **env}, cwd=PROJECT_ROOT,  # noqa: ASYNC220
                                 stdout=sink, stderr=subprocess.STDOUT, preexec_fn=_pin(cores))  # noqa: PLW1509 - before any thread
    process = Process(popen, f"127.0.0.1:{port}", log)
    try:
        await _wait_ready(process, timeout)
        yield process
        if not os.environ.get("BENCH_KEEP_LOGS"):
            log.unlink()  # kept, and named in the error, only when something went wrong (or asked)
    finally:
        stop(popen, signal.SIGINT if "pyinstrument" in argv else signal.SIGTERM)


def stop(popen: subprocess.Popen[bytes], first: int = signal.SIGTERM, timeout: float = 30.0) -> None:
    """SIGTERM (or SIGINT), wait, then SIGKILL: never by name, only this PID."""
    if popen.poll() is None:
        popen.send_signal(first)
        try:
            popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout=10)


async def _wait_ready(process: Process, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2, trust_env=False) as http:
        while time.monotonic() < deadline:
            if process.popen.poll() is not None:
                raise RuntimeError(f"server exited during start-up; log: {process.log}\n{_tail(process.log)}")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(f"http://{process.address}/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"server not ready in {timeout:.0f} s; log: {process.log}")


def _tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def server_argv(profile_to: Path | None = None) -> list[str]:
    """`python -m secure_link serve`, optionally under pyinstrument (a saved session)."""
    serve = ["-m", "secure_link", "serve"]
    if profile_to is None:
        return [sys.executable, *serve]
    return [sys.executable, "-m", "pyinstrument", "-r", "pyisession", "-o", str(profile_to), *serve]


ECHO_ARGV = [sys.executable, "-m", "bench.limits", "echo"]


class CpuMeter:
    """Busy share of each core and CPU seconds of the servers, PostgreSQL and this generator over a stretch."""

    def __init__(self, processes: dict[str, Process | None], postgres: costs.PostgresCpu | None = None) -> None:
        self.processes = {name: p for name, p in processes.items() if p is not None}
        self.postgres = postgres

    def _seconds(self) -> dict[str, float | None]:
        own = psutil.Process().cpu_times()
        spent: dict[str, float | None] = {name: p.cpu_seconds() for name, p in self.processes.items()}
        spent["generator"] = own.user + own.system
        spent["postgres"] = self.postgres.seconds() if self.postgres else None
        return spent

    def __enter__(self) -> Self:
        self.start = time.perf_counter()
        self.cores = psutil.cpu_times(percpu=True)
        self.spent = self._seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        span = time.perf_counter() - self.start
        after, now = psutil.cpu_times(percpu=True), self._seconds()
        self.result: dict[str, Any] = {
            "core_busy_pct": [round(100 * (1 - (b.idle - a.idle) / max(1e-9, sum(b) - sum(a))), 1)
                              for a, b in zip(self.cores, after)]}
        used: dict[str, float | None] = {}
        for name, value in now.items():
            before = self.spent[name]
            used[name] = spent = None if value is None or before is None else value - before
            self.result[f"{name}_cpu_pct"] = None if spent is None else round(100 * spent / span, 1)
        self.result["cpu_s"] = {"server": sum(used[n] or 0.0 for n in self.processes),
                                "postgres": used["postgres"], "generator": used["generator"]}
        self.result["server_affinity"] = {n: sorted(p.ps.cpu_affinity() or []) for n, p in self.processes.items()}


async def measured(run: Callable[[], Any], processes: dict[str, Process | None],
                   postgres: costs.PostgresCpu | None = None) -> dict[str, Any]:
    """A load run's summary, where the CPU went while it ran (per delivered message, or per
    answered request for REST), and the writer's batch sizes from the servers' /metrics."""
    addresses = [p.address for p in processes.values() if p is not None]
    batches_before = await costs.scrape_batches(addresses)
    with CpuMeter(processes, postgres) as meter:
        result = await run()
    summary = {**(result if isinstance(result, dict) else result.summary()), **meter.result}
    summary["batch_sizes"] = costs.batch_delta(batches_before, await costs.scrape_batches(addresses))
    busy = sum(v for k, v in meter.result.items() if k.startswith("server") and k.endswith("_cpu_pct"))
    if "acked_per_s" in summary:
        summary["server_us_per_msg"] = 1e4 * busy / summary["acked_per_s"] if summary["acked_per_s"] else math.nan
    unit, count = ("delivered", summary["delivered"]) if "delivered" in summary else ("request", summary["ok"])
    summary[f"cpu_us_per_{unit}"] = {name: None if spent is None or not count else 1e6 * spent / count
                                     for name, spent in meter.result["cpu_s"].items()}
    return summary


async def ramp_idle(process: Process, accounts: Sequence[Account], step: int, warm: int = 50,
                    concurrency: int = 100) -> dict[str, Any]:
    """Open authenticated sockets in steps until all are held or one fails; RSS per socket."""
    if warm:
        await loadgen.close_all([await loadgen.open_socket(a) for a in accounts[:warm]])
        await asyncio.sleep(1)
    rss_before, held, failure = process.rss(), [], None
    limit, start = asyncio.Semaphore(concurrency), time.perf_counter()

    async def one(account: Account) -> Peer:
        async with limit:
            return await loadgen.open_socket(account)

    for first in range(0, len(accounts), step):
        results = await asyncio.gather(*(one(a) for a in accounts[first:first + step]), return_exceptions=True)
        held += [r for r in results if isinstance(r, Peer)]
        failure = next((repr(r) for r in results if not isinstance(r, Peer)), None)
        if failure:
            break
    connect_s = time.perf_counter() - start
    await asyncio.sleep(2)  # let the server settle (presence rows, LISTENs) before weighing it
    rss_after = process.rss()
    answered = await asyncio.gather(*(_bounded(limit, p.ping(15)) for p in held))
    closing = time.perf_counter()
    await loadgen.close_all(held)
    return {"close_s": time.perf_counter() - closing, "connect_s": connect_s, "target": len(accounts),
            "opened": len(held), "held": sum(answered), "failure": failure,
            "connect_per_s": len(held) / connect_s, "rss_before_mib": rss_before / 2**20,
            "rss_after_mib": rss_after / 2**20,
            "rss_per_conn_kib": (rss_after - rss_before) / max(1, len(held)) / 1024}


async def _bounded(limit: asyncio.Semaphore, work: Any) -> Any:
    async with limit:
        return await work


def rest_requests(kind: str, accounts: Sequence[Account], tag: str) -> Callable[[int, int], bytes]:
    """Raw HTTP/1.1 requests: connection c's n-th GET profile or POST send-message."""
    def build(connection: int, number: int) -> bytes:
        account = accounts[connection % len(accounts)]
        head = f"Host: {account.address}\r\nAuthorization: Bearer {account.token}\r\n"
        if kind == "profile":
            return f"GET /api/user-profile/ HTTP/1.1\r\n{head}\r\n".encode()
        partner = accounts[(connection % len(accounts)) ^ 1].username
        body = json.dumps({"to": partner, "message": TEXT, "client_id": f"{tag}-{connection}-{number}"})
        return (f"POST /api/send-message/ HTTP/1.1\r\n{head}Content-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n{body}").encode()
    return build


async def hammer(address: str, build: Callable[[int, int], bytes], duration: float,
                 connections: int = 32) -> dict[str, Any]:
    """Keep-alive connections each sending request after request: requests/s and latency.

    Raw asyncio HTTP/1.1, because httpx's per-request cost on one generator core
    is close to what a server core answers, and the bench would measure httpx.
    """
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    deadline = time.perf_counter() + duration

    async def client(index: int) -> None:
        host, port = address.split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            number = 0
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                writer.write(build(index, number))
                statuses[await _read_response(reader)] += 1
                latencies.append(time.perf_counter() - began)
                number += 1
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(connections)))
    span = time.perf_counter() - start
    ok = sum(n for status, n in statuses.items() if 200 <= status < 300)
    return {"requests_per_s": ok / span, "ok": ok, "connections": connections, "errors": sum(statuses.values()) - ok,
            "statuses": {str(k): v for k, v in statuses.items()}, "latency_ms": loadgen.percentiles(latencies)}


async def _read_response(reader: asyncio.StreamReader) -> int:
    """The status of one response, its body read by Content-Length (all our answers have one)."""
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)).decode("latin-1")
    length = 0
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    await reader.readexactly(length)
    return int(head.split(" ", 2)[1])
