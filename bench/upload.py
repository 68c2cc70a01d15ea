"""Upload throughput, and how much the server's memory grows while a large file streams in.

    .venv/bin/python -m bench.upload --size-mib 1024     # the real measure
    .venv/bin/python -m bench.upload --size-mib 64       # a quick look

The app runs in this process on uvicorn (as tests/conftest.py's running_server
does), on DATABASE_URL or else a `secure_link_bench` database of the embedded
PostgreSQL, with MAX_UPLOAD_BYTES raised to fit. One user streams a generated
file (ZIP magic, then pseudo-random bytes) as multipart with no Content-Length;
a thread samples the process's RSS meanwhile. The client side only ever holds
one 1 MiB block, so the growth is the server's. Prints a table and writes
bench/results/upload.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import AsyncIterator

import httpx
import psutil
import uvicorn

from secure_link import devdb
from secure_link.app import create_app
from secure_link.config import PROJECT_ROOT, Settings

MIB = 1024 * 1024
BOUNDARY = "bench-upload-boundary"
RESULTS = Path(__file__).resolve().parent / "results" / "upload.json"


class RssSampler(threading.Thread):
    """The process's resident memory every 10 ms, in its own thread so a busy loop cannot hide a peak."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process()
        self.peak = self.process.memory_info().rss
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.01):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def stop(self) -> int:
        self.stopping.set()
        self.join()
        return self.peak


async def database_url() -> str:
    """DATABASE_URL, else a bench database on the embedded server (the dev data stays untouched)."""
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    server_url = await asyncio.to_thread(devdb.start_server, PROJECT_ROOT / "var")
    await devdb.create_database(server_url, "secure_link_bench")
    return devdb.with_database(server_url, "secure_link_bench")


async def body(size: int) -> AsyncIterator[bytes]:
    """A multipart body around `size` bytes of file, from one reused 1 MiB block."""
    yield (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"bench.zip\"\r\n"
           "Content-Type: application/zip\r\n\r\n").encode()
    block = os.urandom(MIB)
    first = b"PK\x03\x04" + block[4:]  # ZIP magic: stored as received, like any non-image
    for offset in range(0, size, MIB):
        yield (first if offset == 0 else block)[: size - offset]
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


async def measure(size_mib: int) -> dict[str, object]:
    """Serve, register, upload once, and report time and RSS."""
    media_root = PROJECT_ROOT / "var" / "bench-media"
    settings = Settings(database_url=await database_url(), media_root=media_root, bcrypt_rounds=4,
                        pepper="bench-only-pepper", register_rate_per_min=0, upload_rate_per_min=0,
                        upload_quota_bytes=0, max_upload_bytes=size_mib * MIB + MIB)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=None) as http:
            return await _upload(http, size_mib)
    finally:
        server.should_exit = True
        await task
        shutil.rmtree(media_root, ignore_errors=True)


async def _upload(http: httpx.AsyncClient, size_mib: int) -> dict[str, object]:
    name = f"bench_{os.getpid()}_{int(time.time())}"
    registered = await http.post("/api/register/", json={"username": name, "phrase": "bench upload phrase here"})
    registered.raise_for_status()
    headers = {"Authorization": f"Bearer {registered.json()['token']}",
               "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    sampler = RssSampler()
    before = sampler.peak
    sampler.start()
    started = time.perf_counter()
    response = await http.post("/api/upload-file/", content=body(size_mib * MIB), headers=headers)
    seconds = time.perf_counter() - started
    peak = sampler.stop()
    response.raise_for_status()
    assert response.json()["file"]["size"] == size_mib * MIB
    return {
        "size_mib": size_mib, "seconds": round(seconds, 2), "mib_per_s": round(size_mib / seconds, 1),
        "rss_before_mib": round(before / MIB, 1), "rss_peak_mib": round(peak / MIB, 1),
        "rss_growth_mib": round((peak - before) / MIB, 1),
        "python": platform.python_version(), "cpus": os.cpu_count(),
        "measured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="file size in MiB (64 for a quick run)")
    result = asyncio.run(measure(parser.parse_args().size_mib))
    columns = ["size_mib", "seconds", "mib_per_s", "rss_before_mib", "rss_peak_mib", "rss_growth_mib"]
    print(" | ".join(f"{column:>14}" for column in columns))
    print(" | ".join(f"{result[column]!s:>14}" for column in columns))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {RESULTS.relative_to(PROJECT_ROOT)}")


if __name__ == "__main__":
    main()
