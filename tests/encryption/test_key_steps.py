"""The master key's steps after erasures (secure_link/encryption/epochs.py, docs/privacy.md).

After a logout the master key moves on: the next key is derived from the current one, every
live data key is rewrapped, the old key is retired from the database and overwritten in its
file. Everything stored stays readable, every host follows with its own copy of the file, a
step left half done is finished, none runs during a rotation, and none runs without an erasure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from pathlib import Path
from collections.abc import AsyncIterator

import asyncpg
import pytest

from secure_link.encryption import epochs
from secure_link.db import Database
from secure_link.encryption.keyring import Keyring, key_id, next_master, next_path, read_key

from ..conftest import running_server, settings_for
from ..story import Person, Server, eventually, upload

NEVER = 3600.0  # a step interval no test waits out


@contextlib.asynccontextmanager
async def connection(url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(url)
    try:
        yield conn
    finally:
        await conn.close()


async def registered(url: str) -> set[str]:
    async with connection(url) as conn:
        return {row["id"] for row in await conn.fetch("SELECT id FROM master_keys")}


def private_copy(source: Path, folder: Path) -> Path:
    """Another host's MASTER_KEY_FILE: the first host's file, copied as docs/deploy.md says."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    copy = folder / "master-key"
    shutil.copyfile(source, copy)
    copy.chmod(0o600)
    return copy


async def conversation(server: Server) -> tuple[Person, Person, dict, dict]:
    """Alice and Bob talk and share a file; what is stored before any step."""
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    said = (await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "before"})).json()
    note = await upload(alice, b"a note from before\n", "note.txt")
    await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "see", "attachment": note["id"]})
    return alice, bob, said, note


async def test_a_logout_steps_the_key_retires_the_old_one_and_overwrites_it_where_it_lay(
        own_database: str, tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "master-key"
    settings = settings_for(own_database, tmp_path / "media", master_key_file=key_file, key_step_interval=0.0)
    async with running_server(settings) as server:
        alice, bob, _said, note = await conversation(server)
        carol = await server.person("carol").register()
        await carol.api("POST", "/api/send-message/", json={"to": bob.username, "message": "Carol stays"})
        old = read_key(key_file)
        old_name = key_file.with_name("the-old-key-by-another-name")
        os.link(key_file, old_name)  # a second name for the old file's bytes, to see them after
        assert await registered(own_database) == {key_id(old)}

        assert (await alice.api("POST", "/api/logout/")).status_code == 200
        await eventually(lambda: stepped(own_database, key_file, key_id(next_master(old))))
        assert read_key(key_file) == next_master(old)
        assert old_name.read_bytes().strip(b"\0") == b""  # the old key's bytes, overwritten in place
        history = await bob.api("GET", "/api/messages/", params={"with": carol.username})
        assert [m["message"] for m in history.json()["messages"]] == ["Carol stays"]  # rewrapped, readable
        assert (await bob.api("GET", note["url"])).status_code == 404  # cleared with the conversation
        newer = await upload(bob, b"after the step\n", "after.txt")  # wrapped by the new key
        assert (await bob.api("GET", newer["url"])).content == b"after the step\n"
    async with running_server(settings) as restarted:  # and a server started afterwards reads it all
        assert (await bob.on(restarted).api("GET", newer["url"])).content == b"after the step\n"
    assert sorted(path.name for path in key_file.parent.iterdir()) == ["master-key", "the-old-key-by-another-name"]


async def stepped(url: str, key_file: Path, new_id: str) -> bool:
    return await registered(url) == {new_id} and key_id(read_key(key_file)) == new_id


async def test_another_host_follows_with_its_own_file(own_database: str, tmp_path: Path) -> None:
    """Two hosts, each with its copy of the key file: host A steps after a logout; host B derives
    the new key when it meets it, wraps with it, and rewrites its own file (housekeeping)."""
    first = tmp_path / "a" / "master-key"
    a = settings_for(own_database, tmp_path / "media", master_key_file=first, key_step_interval=0.0)
    async with running_server(a) as host_a:
        alice, bob, _, _note = await conversation(host_a)
        second = private_copy(first, tmp_path / "b")
        b = a.replace(master_key_file=second, key_step_interval=NEVER, housekeeping_interval=0.2)
        async with running_server(b) as host_b:
            old = read_key(first)
            carol = await host_a.person("carol").register()
            await carol.api("POST", "/api/send-message/", json={"to": bob.username, "message": "for Bob"})
            assert (await alice.api("POST", "/api/logout/")).status_code == 200
            await eventually(lambda: stepped(own_database, first, key_id(next_master(old))))
            await eventually(lambda: key_file_holds(second, next_master(old)))
            on_b = bob.on(host_b)
            history = await on_b.api("GET", "/api/messages/", params={"with": carol.username})
            assert [m["message"] for m in history.json()["messages"]] == ["for Bob"]
            dave = await host_b.person("dave").register()  # a new conversation key, wrapped on B
            assert (await dave.api("POST", "/api/send-message/", json={"to": bob.username, "message": "hi"})
                    ).status_code == 201
            uploaded = await upload(dave, b"from B\n", "b.txt")  # a file key, wrapped on B
            assert (await dave.api("GET", uploaded["url"])).content == b"from B\n"
    assert await registered(own_database) == {key_id(next_master(old))}


async def key_file_holds(path: Path, master: bytes) -> bool:
    return read_key(path) == master


async def test_a_step_left_half_done_is_finished_and_servers_start_meanwhile(own_database: str,
                                                                          tmp_path: Path) -> None:
    """What a step killed after registering its key leaves: two keys registered, the new one
    reachable from the file's. A server starts on it, serves what is stored, and finishes the step."""
    key_file = tmp_path / "keys" / "master-key"
    settings = settings_for(own_database, tmp_path / "media", master_key_file=key_file, key_step_interval=NEVER)
    async with running_server(settings) as server:
        alice, bob, _, _ = await conversation(server)
    old = read_key(key_file)
    async with connection(own_database) as conn:
        await conn.execute("INSERT INTO master_keys (id) VALUES ($1)", key_id(next_master(old)))
    async with running_server(settings) as restarted:
        await eventually(lambda: stepped(own_database, key_file, key_id(next_master(old))))
        history = await bob.on(restarted).api("GET", "/api/messages/", params={"with": alice.username})
        assert history.status_code == 200 and history.json()["messages"][0]["message"] == "before"


async def test_no_step_runs_during_a_rotation_nor_without_an_erasure(own_database: str, tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "master-key"
    settings = settings_for(own_database, tmp_path / "media", master_key_file=key_file, key_step_interval=0.0)
    async with running_server(settings) as server:
        await conversation(server)
        await asyncio.sleep(0.5)  # several of the stepper's rounds: nothing was erased
        assert key_id(read_key(key_file)) in await registered(own_database)
        assert len(await registered(own_database)) == 1
    database = await Database.connect(own_database, min_size=1, max_size=3)
    try:
        keyring = Keyring.load(key_file)
        async with connection(own_database) as conn:
            await conn.execute("SELECT nextval('erasure_count')")  # an erasure awaits a step
        next_path(key_file).write_text("a rotation's next key, as far as a step can tell\n")
        assert await epochs.step(database, keyring, key_file) is None
        next_path(key_file).unlink()
        stepped_to = await epochs.step(database, keyring, key_file)
        assert stepped_to is not None and stepped_to.master_key_id == key_id(read_key(key_file))
    finally:
        await database.close()


@pytest.mark.parametrize("steps", [1, 40])
def test_a_key_reaches_its_later_steps_and_never_an_earlier_one(steps: int) -> None:
    start = os.urandom(32)
    later = start
    for _ in range(steps):
        later = next_master(later)
    assert Keyring([start]).reach(key_id(later)) and Keyring([start]).key_for(key_id(start)) == start
    assert not Keyring([later]).reach(key_id(start))
