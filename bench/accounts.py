"""Start-up time with the embedded PostgreSQL, and register/login latency at the real bcrypt cost.

    .venv/bin/python -m bench.accounts [--users 10]

Runs `python -m secure_link serve` with DATABASE_URL unset and a fresh data
folder under var/, so the first start includes initdb (cold) and the second
reuses it (warm). Then registers and logs in users one at a time with the
default BCRYPT_ROUNDS (12): what a person waits for. Then a flood: 150
wrong-phrase logins at once while a real user logs in, to show what the
bounded hashing line (BCRYPT_QUEUE) gives them. Last, 200 logins each with
the right phrase, a wrong one and an unknown user, interleaved: the ratio of
their medians says whether timing tells them apart. Prints a table and writes
bench/results/accounts.json. Every process is stopped by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from collections.abc import Awaitable, Callable

import httpx

from secure_link.config import PROJECT_ROOT

RESULTS = PROJECT_ROOT / "bench" / "results" / "accounts.json"
PHRASE = "correct horse battery staple"


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def _start(var_dir: Path, port: int) -> tuple[subprocess.Popen, float]:
    """A zero-configuration server; seconds from exec until /readyz answers 200."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BROADCAST_URL")}
    env.update(SECURE_LINK_VAR_DIR=str(var_dir), SECURE_LINK_LOG_LEVEL="warning",
               REGISTER_RATE_PER_MIN="0", LOGIN_FAILURES_PER_15_MIN="0")
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "secure_link", "serve", "--port", str(port)],  # noqa: ASYNC220 - Popen returns at once; the process is stopped by PID
                               env=env, cwd=PROJECT_ROOT)
    async with httpx.AsyncClient() as http:
        while time.perf_counter() - started < 60:
            if process.poll() is not None:
                raise RuntimeError("server exited during start-up")
            try:
                if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return process, time.perf_counter() - started
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.02)
    _stop(process)
    raise RuntimeError("server did not become ready in 60 s")


def _stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def _timed(call: Callable[[], Awaitable[httpx.Response]], expect: int) -> float:
    started = time.perf_counter()
    response = await call()
    elapsed = time.perf_counter() - started
    if response.status_code != expect:
        raise RuntimeError(f"expected {expect}, got {response.status_code}: {response.text}")
    return elapsed * 1000


async def _latencies(port: int, users: int) -> dict[str, list[float]]:
    """Sequential requests: the latency one person sees, not throughput."""
    names = [f"lat_{uuid.uuid4().hex[:10]}" for _ in range(users)]
    found: dict[str, list[float]] = {"register": [], "login": [], "wrong phrase": [], "unknown user": []}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        for name in names:
            body = {"username": name, "phrase": PHRASE}
            found["register"].append(await _timed(functools.partial(http.post, "/api/register/", json=body), 201))
            found["login"].append(await _timed(functools.partial(http.post, "/api/login/", json=body), 200))
            wrong = {"username": name, "phrase": PHRASE + " typo"}
            found["wrong phrase"].append(await _timed(functools.partial(http.post, "/api/login/", json=wrong), 401))
            unknown = {"username": "nobody_" + name, "phrase": PHRASE}
            found["unknown user"].append(await _timed(functools.partial(http.post, "/api/login/", json=unknown), 401))
    return found


async def _timing(port: int, attempts: int) -> dict:
    """Right phrase, wrong phrase, unknown user, interleaved `attempts` times: can timing tell them apart?"""
    name = f"timed_{uuid.uuid4().hex[:10]}"
    found: dict[str, list[float]] = {"right phrase": [], "wrong phrase": [], "unknown user": []}
    bodies = {"right phrase": ({"username": name, "phrase": PHRASE}, 200),
              "wrong phrase": ({"username": name, "phrase": PHRASE + " typo"}, 401),
              "unknown user": ({"username": "nobody_" + name, "phrase": PHRASE}, 401)}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        await http.post("/api/register/", json={"username": name, "phrase": PHRASE})
        for _ in range(attempts):
            for kind, (body, status) in bodies.items():
                found[kind].append(await _timed(functools.partial(http.post, "/api/login/", json=body), status))
    medians = {kind: statistics.median(samples) for kind, samples in found.items()}
    right = medians["right phrase"]
    return {"attempts": attempts, "median_ms": medians,
            "ratio_to_right": {kind: median / right for kind, median in medians.items()}}


async def _flood(port: int, size: int = 150) -> dict:
    """`size` wrong phrases at once; meanwhile one real user logs in, five times in a row."""
    name = f"real_{uuid.uuid4().hex[:10]}"
    limits = httpx.Limits(max_connections=size + 10)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60, limits=limits) as http:
        await http.post("/api/register/", json={"username": name, "phrase": PHRASE})
        started = time.perf_counter()
        flood = asyncio.gather(*(http.post("/api/login/", json={"username": f"x_{n}", "phrase": PHRASE})
                                 for n in range(size)))
        await asyncio.sleep(0.05)
        real: list[tuple[int, float]] = []
        for _ in range(5):
            begun = time.perf_counter()
            response = await http.post("/api/login/", json={"username": name, "phrase": PHRASE})
            real.append((response.status_code, (time.perf_counter() - begun) * 1000))
        answers = await flood
    statuses = [answer.status_code for answer in answers]
    return {"flood": size, "flood_s": time.perf_counter() - started,
            "flood_401": statuses.count(401), "flood_503": statuses.count(503),
            "real_login_status": [status for status, _ in real], "real_login_ms": [ms for _, ms in real]}


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"median": statistics.median(ordered), "min": ordered[0], "max": ordered[-1], "n": len(ordered)}


async def run(users: int, timing_attempts: int) -> dict:
    var_dir = PROJECT_ROOT / "var" / f"bench-accounts-{os.getpid()}"
    port = _free_port()
    try:
        process, cold = await _start(var_dir, port)
        _stop(process)
        process, warm = await _start(var_dir, port)
        try:
            latencies = await _latencies(port, users)
            flood = await _flood(port)
            timing = await _timing(port, timing_attempts)
        finally:
            _stop(process)
    finally:
        shutil.rmtree(var_dir, ignore_errors=True)
    return {"start_cold_s": cold, "start_warm_s": warm, "bcrypt_rounds": 12,
            "latency_ms": {k: _summary(v) for k, v in latencies.items()}, "flood": flood, "timing": timing}


def print_table(result: dict) -> None:
    print(f"\nstart-up to /readyz, embedded PostgreSQL: cold (initdb) {result['start_cold_s']:.2f} s, "
          f"warm {result['start_warm_s']:.2f} s")
    print(f"\n{'request (bcrypt cost 12)':<26}{'median ms':>10}{'min':>8}{'max':>8}{'n':>4}")
    for name, figures in result["latency_ms"].items():
        print(f"{name:<26}{figures['median']:>10.0f}{figures['min']:>8.0f}{figures['max']:>8.0f}{figures['n']:>4}")
    flood = result["flood"]
    print(f"\nflood of {flood['flood']} wrong phrases at once: {flood['flood_401']} hashed (401), "
          f"{flood['flood_503']} turned away (503 busy), over {flood['flood_s']:.1f} s")
    print("a real user's logins meanwhile: " + ", ".join(
        f"{status} in {ms:.0f} ms" for status, ms in zip(flood["real_login_status"], flood["real_login_ms"])))
    timing = result["timing"]
    print(f"\nlogin timing over {timing['attempts']} attempts each (median ms, ratio to the right phrase):")
    for kind, median in timing["median_ms"].items():
        print(f"  {kind:<14}{median:>8.1f}{timing['ratio_to_right'][kind]:>8.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--timing-attempts", type=int, default=200)
    arguments = parser.parse_args()
    result = asyncio.run(run(arguments.users, arguments.timing_attempts))
    print_table(result)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
