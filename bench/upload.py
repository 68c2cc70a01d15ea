"""Upload and download throughput, with and without encryption at rest, and the server's memory.

    .venv/bin/python -m bench.upload --size-mib 1024     # the real measure
    .venv/bin/python -m bench.upload --size-mib 64       # a quick look

The app runs in this process on uvicorn (as tests/conftest.py's running_server
does), on DATABASE_URL or else a `secure_link_bench` database of the embedded
PostgreSQL, with MAX_UPLOAD_BYTES raised to fit. One user streams a generated
file (ZIP magic, then pseudo-random bytes) as multipart with no Content-Length;
a thread samples the process's RSS meanwhile. The client side only ever holds
one 1 MiB block, so the growth is the server's. Then the file is downloaded
whole, as stored (encrypted, decrypted as it is sent); then the same file is
turned back into one stored before encryption (plaintext on disk, no data key:
served by Starlette's FileResponse) and downloaded again, the baseline. Uploads
have no such switch: compare with the figures before encryption in
docs/performance.md. Prints a table and writes bench/results/upload.json.
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
from collections.abc import AsyncIterator

import httpx
import psutil
import uvicorn

import asyncpg

from secure_link.ops import devdb
from secure_link.encryption import contexts
from secure_link.encryption import sealedfile
from secure_link.app import create_app
from secure_link.config import PROJECT_ROOT, Settings
from secure_link.encryption.keyring import Keyring

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
                        pepper="bench-only-pepper", master_key_file=PROJECT_ROOT / "var" / "bench-master-key",
                        register_rate_per_min=0, upload_rate_per_min=0,
                        upload_quota_bytes=0, max_upload_bytes=size_mib * MIB + MIB)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=None) as http:
            result, file_id, headers = await _upload(http, size_mib)
            result["download_sealed_mib_per_s"] = await _download(http, file_id, headers, size_mib)
            await _store_as_before_encryption(settings, file_id)
            result["download_plain_mib_per_s"] = await _download(http, file_id, headers, size_mib)
            return result
    finally:
        server.should_exit = True
        await task
        shutil.rmtree(media_root, ignore_errors=True)


async def _upload(http: httpx.AsyncClient, size_mib: int) -> tuple[dict[str, object], str, dict[str, str]]:
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
        "measured_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }, response.json()["file"]["id"], {"Authorization": headers["Authorization"]}


async def _download(http: httpx.AsyncClient, file_id: str, headers: dict[str, str], size_mib: int) -> float:
    """MiB/s of one whole download, read as it arrives and thrown away."""
    received = 0
    started = time.perf_counter()
    async with http.stream("GET", f"/media/{file_id}", headers=headers) as response:
        response.raise_for_status()
        async for chunk in response.aiter_raw():
            received += len(chunk)
    seconds = time.perf_counter() - started
    assert received == size_mib * MIB, received
    return round(size_mib / seconds, 1)


async def _store_as_before_encryption(settings: Settings, file_id: str) -> None:
    """The baseline: the file decrypted in place and its data key dropped, as a file stored
    before encryption at rest is (served as stored)."""
    assert settings.database_url and settings.master_key_file
    connection = await asyncpg.connect(settings.database_url)
    try:
        row = await connection.fetchrow("SELECT path, wrapped_key FROM files WHERE id = $1", file_id)
        key = Keyring.load(settings.master_key_file).unwrap(row["wrapped_key"], contexts.file_key(file_id))
        await asyncio.to_thread(_decrypt_in_place, settings.media_root / row["path"], key, file_id)
        await connection.execute("UPDATE files SET wrapped_key = NULL, master_key_id = NULL WHERE id = $1", file_id)
    finally:
        await connection.close()


def _decrypt_in_place(path: Path, key: bytes, file_id: str) -> None:
    plain = path.with_name(path.name + ".plain")
    with sealedfile.Reader.open(path, key, contexts.file_content(file_id, thumbnail=False)) as reader, open(plain, "wb") as out:
        for start in range(0, reader.size, MIB):
            out.writelines(reader.chunks(start, min(reader.size, start + MIB)))
    os.replace(plain, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="file size in MiB (64 for a quick run)")
    result = asyncio.run(measure(parser.parse_args().size_mib))
    columns = ["size_mib", "mib_per_s", "rss_growth_mib", "download_sealed_mib_per_s", "download_plain_mib_per_s"]
    print(" | ".join(f"{column:>25}" for column in columns))
    print(" | ".join(f"{result[column]!s:>25}" for column in columns))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {RESULTS.relative_to(PROJECT_ROOT)}")


if __name__ == "__main__":
    main()
