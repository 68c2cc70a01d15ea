"""Uploads within bounds: a quota of unsent bytes per user, uploads per minute, one image decode per user.

Alice fills her quota and is refused before her body is read; sending a file
frees its place. Twelve uploads at once cannot overshoot, a burst past the rate
waits, and however many 40 Mpx images arrive a worker's memory stays bounded.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import asyncpg
import pytest

from secure_link.config import Settings

from ..conftest import running_server, server_process, settings_for
from ..story import BOUNDARY, PNG, Person, assert_error, form, image_bytes, statuses, upload


async def test_unsent_uploads_stop_at_the_quota_and_sending_frees_it(database_url: str, media_root: Path) -> None:
    settings = settings_for(database_url, media_root, upload_quota_bytes=2500)
    async with running_server(settings) as server:
        alice, bob = await server.person("alice").register(), await server.person("bob").register()
        first = await upload(alice, b"a" * 1000 + b"\n", "one.txt")
        await upload(alice, b"b" * 1000 + b"\n", "two.txt")
        before = sorted(path for path in media_root.rglob("*") if path.is_file())
        over = await alice.api("POST", "/api/upload-file/", **form(b"c" * 1000 + b"\n", "three.txt"))
        assert_error(over, 413, "quota_exceeded")
        photo = await alice.api("POST", "/api/upload-file/", **form(image_bytes(size=(640, 480)), "photo.png"))
        assert_error(photo, 413, "quota_exceeded")  # an image: refused with its thumbnail written too
        # refused only once stored (2002 bytes passed the first check): what was stored is gone again
        assert sorted(path for path in media_root.rglob("*") if path.is_file()) == before
        assert (await bob.api("POST", "/api/upload-file/", **form(b"d" * 1000 + b"\n", "bobs.txt"))).status_code == 201
        sent = await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "here",
                                                                   "attachment": first["id"]})
        assert sent.status_code == 201
        await upload(alice, b"c" * 1000 + b"\n", "three.txt")  # the sent file is the conversation's now


@pytest.mark.parametrize(("quota", "sizes", "expected"), [
    (0, [1001, 1001, 1001], [201, 201, 201]),  # 0 = off
    (2002, [1001, 1001, 1001], [201, 201, 413]),  # filling it exactly is within it
    (1, [2], [413]),  # a one-byte quota is a quota
])
async def test_the_upload_quota_at_its_edges(database_url: str, media_root: Path, quota: int,
                                              sizes: list[int], expected: list[int]) -> None:
    settings = settings_for(database_url, media_root, upload_quota_bytes=quota)
    async with running_server(settings) as server:
        alice = await server.person("alice").register()
        answers = [await alice.api("POST", "/api/upload-file/", **form(b"q" * (size - 1) + b"\n", f"{n}.txt"))
                   for n, size in enumerate(sizes)]
        assert [answer.status_code for answer in answers] == expected
        for refused in (answer for answer in answers if answer.status_code == 413):
            assert_error(refused, 413, "quota_exceeded")
            assert f"quota of {quota} bytes" in refused.json()["error"]["message"]


async def test_a_full_quota_refuses_an_upload_from_its_headers_before_its_body(database_url: str,
                                                                             media_root: Path) -> None:
    """With the quota already full, the upload is refused before its body is read: the client
    is not made to send, nor the server to store, what cannot be kept. This body never ends."""
    settings = settings_for(database_url, media_root, upload_quota_bytes=1)
    async with running_server(settings) as server:
        alice = await server.person("alice").register()
        await upload(alice, b"\n", "one.txt")  # one byte fills it exactly
        host, port = server.address.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(f"POST /api/upload-file/ HTTP/1.1\r\nHost: {server.address}\r\n"
                         f"Authorization: Bearer {alice.token}\r\n"
                         f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
                         f"Content-Length: 1000000\r\n\r\n--{BOUNDARY}\r\n".encode())
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)[1])  # type: ignore[index]
            body = json.loads(await reader.readexactly(length))
        finally:
            writer.close()
            await writer.wait_closed()
        assert head.startswith(b"HTTP/1.1 413 "), head
        assert body["error"]["code"] == "quota_exceeded"


async def test_concurrent_uploads_cannot_overshoot_the_quota(database_url: str, media_root: Path,
                                                             db: asyncpg.Connection) -> None:
    settings = settings_for(database_url, media_root, upload_quota_bytes=5000)
    async with running_server(settings) as server:
        alice = await server.person("alice").register()
        answers = await asyncio.gather(*(alice.api("POST", "/api/upload-file/", **form(b"x" * 1000 + b"\n", f"{n}.txt"))
                                         for n in range(12)))
        assert statuses(answers) == {201: 4, 413: 8}
        stored = await db.fetchval("SELECT sum(size) FROM files WHERE owner_id = $1", alice.user["id"])  # type: ignore[index]
        assert stored == 4 * 1001


async def test_uploads_past_the_rate_get_429_quota_exceeded(database_url: str, media_root: Path) -> None:
    settings = settings_for(database_url, media_root, upload_rate_per_min=3)
    async with running_server(settings) as server:
        alice, bob = await server.person("alice").register(), await server.person("bob").register()
        for n in range(3):
            await upload(alice, PNG, f"{n}.png")
        refused = await alice.api("POST", "/api/upload-file/", **form(PNG, "3.png"))
        assert_error(refused, 429, "quota_exceeded")
        assert int(refused.headers["Retry-After"]) >= 1
        await upload(bob, PNG, "bobs.png")  # the budget is Alice's alone


def peak_and_now_kib(pid: int) -> tuple[int, int]:
    """VmHWM (the process's peak resident memory) and VmRSS, from /proc."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["VmHWM"].split()[0]), int(fields["VmRSS"].split()[0])


def huge_png() -> bytes:
    """6320 x 6320 pixels (just under the default MAX_IMAGE_PIXELS) in ~110 KiB: 160 MB once decoded."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (6320, 6320), (10, 20, 30)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.slow
async def test_image_decodes_are_one_per_user_and_bound_a_workers_memory(database_url: str, settings: Settings) -> None:
    """With the default limits a worker stays under 450 MiB however many 40 Mpx images arrive.

    One decoded 40 Mpx image is 160 MB. One user's two at once are decoded
    one after the other (peak: one image); three users' at once, two at a time
    (IMAGE_CONCURRENCY); afterwards the memory goes back to the system.
    """
    big = huge_png()

    async def upload_big(person: Person) -> None:  # a loaded CI machine may take seconds per decode
        answer = await person.api("POST", "/api/upload-file/", timeout=120, **form(big, "big.png"))
        assert answer.status_code == 201, answer.text

    async with server_process(database_url, database_url, settings) as server:
        assert server.pid is not None
        alice, bob, carol = [await server.person(name).register() for name in ("alice", "bob", "carol")]
        baseline = peak_and_now_kib(server.pid)[1]
        await asyncio.gather(upload_big(alice), upload_big(alice))
        one_user_peak = peak_and_now_kib(server.pid)[0]
        assert one_user_peak - baseline < 240 * 1024, (baseline, one_user_peak)  # one image, not two
        await asyncio.gather(*(upload_big(person) for person in (alice, bob, carol)))
        peak, after = peak_and_now_kib(server.pid)
        assert peak < 450 * 1024, peak
        assert after - baseline < 64 * 1024, (baseline, after)
