"""Disappearing messages, delete for everyone, and nothing left behind (contract v1.1).

Alice and Bob set a timer; what they send with it expires on every read path
at its instant, and the sweeper deletes rows and files within seconds. Either
may delete a message for both. And after all of it, neither PostgreSQL's data
directory (heap and WAL) nor MEDIA_ROOT holds a byte of what they said.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import errno
import os
import random
import signal
import time
import uuid
from pathlib import Path
from typing import Any
from collections.abc import AsyncIterator

import asyncpg
import pytest

from secure_link.ops import devdb
from secure_link.config import Settings
from secure_link.encryption.keyring import Keyring, new_master_key

from ..conftest import run_cli, running_server, server_process, settings_for
from ..story import Person, Server, Socket, assert_error, eventually, image_bytes, refuse, sync, upload, waiting_for_a_lock

NO_SWEEP = 3600.0  # a sweeper that never runs in the test: expiry must hold by the read filters alone


@contextlib.asynccontextmanager
async def own_connection(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    try:
        yield connection
    finally:
        await connection.close()


def parse(moment: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(moment)


async def set_timer(person: Person, peer: Person, seconds: Any) -> Any:
    return await person.api("PUT", f"/api/conversations/{peer.username}/timer/", json={"seconds": seconds})


async def until_gone(db: asyncpg.Connection, message_ids: list[int], timeout: float = 10.0) -> float:
    """Seconds until none of the rows is stored any more."""
    started = time.monotonic()
    while await db.fetchval("SELECT count(*) FROM messages WHERE id = ANY($1::bigint[])", message_ids):
        assert time.monotonic() - started < timeout, "the rows were never swept"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def deleted_frame(socket: Socket) -> dict[str, Any]:
    return await socket.expect("deleted", skip=("presence", "chat", "timer", "read", "typing"), timeout=10)


# ---- timers -----------------------------------------------------------------

async def test_a_timer_is_off_until_set_then_both_parties_hear_who_set_it(server: Server) -> None:
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    alice_tab, bob_tab = await alice.connect(), await bob.connect()
    never = (await alice.api("GET", f"/api/conversations/{bob.username}/timer/")).json()
    assert never == {"with": bob.username, "seconds": 0, "set_by": None, "set_at": None}
    answer = await set_timer(alice, bob, 30)
    assert answer.status_code == 200
    assert answer.json()["seconds"] == 30 and answer.json()["set_by"] == alice.username
    assert await bob_tab.expect("timer") == {"type": "timer", "with": alice.username, "seconds": 30,
                                             "by": alice.username}
    assert await alice_tab.expect("timer") == {"type": "timer", "with": bob.username, "seconds": 30,
                                               "by": alice.username}
    seen_by_bob = (await bob.api("GET", f"/api/conversations/{alice.username}/timer")).json()  # no slash too
    assert seen_by_bob["seconds"] == 30 and seen_by_bob["set_by"] == alice.username and seen_by_bob["set_at"]
    assert (await alice.api("POST", "/api/logout/")).status_code == 200  # her logout clears the conversation,
    after_logout = (await bob.api("GET", f"/api/conversations/{alice.username}/timer/")).json()  # its timer too
    assert after_logout == {"with": alice.username, "seconds": 0, "set_by": None, "set_at": None}


@pytest.mark.parametrize("seconds", [-1, 2_419_201, "30", 1.5, True, None, [30]])
async def test_a_timer_out_of_range_or_not_a_whole_number_is_refused(server: Server, seconds: Any) -> None:
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    assert_error(await set_timer(alice, bob, seconds), 422, "invalid_timer", "seconds")
    assert (await alice.api("GET", f"/api/conversations/{bob.username}/timer/")).json()["seconds"] == 0


async def test_a_timer_needs_a_real_other_party_and_a_session(server: Server) -> None:
    alice = await server.person("alice").register()
    assert_error(await set_timer(alice, alice, 30), 422, "invalid_recipient")
    ghost = server.person("ghost")
    assert_error(await alice.api("PUT", f"/api/conversations/{ghost.username}/timer/", json={"seconds": 30}),
                 404, "unknown_user")
    async with server.client() as anonymous:
        assert (await anonymous.get(f"/api/conversations/{alice.username}/timer/")).status_code == 401
    assert_error(await alice.api("PUT", f"/api/conversations/{alice.username}/timer/", content=b"{",
                                 headers={"content-type": "application/json"}), 400, "bad_json")


async def test_the_timer_frame_sets_it_and_a_bad_one_answers_an_error_frame(server: Server) -> None:
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    alice_tab, bob_tab = await alice.connect(), await bob.connect()
    await alice_tab.send({"type": "timer", "with": bob.username, "seconds": 5})
    assert (await bob_tab.expect("timer"))["seconds"] == 5
    await alice_tab.send({"type": "timer", "with": bob.username, "seconds": "soon"})
    error = await alice_tab.expect("error", skip=("timer", "presence"))
    assert error["code"] == "invalid_timer"
    await alice_tab.send({"type": "timer", "seconds": 5})  # whose?
    error = await alice_tab.expect("error", skip=("timer", "presence"))
    assert (error["code"], list(error["fields"])) == ("missing_recipient", ["with"])


async def test_a_socket_opened_for_one_conversation_sets_its_timer_without_naming_it(server: Server) -> None:
    """As `chat` does: a socket opened with `?with=bob` means Bob when `with` is left out."""
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    alice_tab, bob_tab = await alice.connect(f"?with={bob.username}"), await bob.connect()
    await alice_tab.send({"type": "timer", "seconds": 30})
    timer = await bob_tab.expect("timer")
    assert (timer["seconds"], timer["with"]) == (30, alice.username)


# ---- expiry -----------------------------------------------------------------

async def test_expired_messages_are_gone_from_every_read_path_before_any_sweep(
        own_database: str, media_root: Path) -> None:
    """On a database of its own: the module's server would sweep."""
    settings = settings_for(own_database, media_root, expiry_sweep_interval=NO_SWEEP)
    async with running_server(settings) as server, own_connection(own_database) as db:
        alice, bob = await server.person("alice").register(), await server.person("bob").register()
        bob_tab = await bob.connect()
        kept = await alice.say(await alice.connect(), bob, "this one stays")
        await set_timer(alice, bob, 1)
        photo = await upload(alice, image_bytes(), "photo.png")
        fleeting = (await alice.api("POST", "/api/send-message/",
                                    json={"to": bob.username, "message": "gone in a second",
                                          "attachment": photo["id"]})).json()
        assert parse(fleeting["expires_at"]) - parse(fleeting["sent_at"]) == datetime.timedelta(seconds=1)
        assert kept["expires_at"] is None
        assert (await bob.api("GET", photo["url"])).status_code == 200
        for _ in (kept, fleeting):
            await bob_tab.expect("chat", skip=("presence", "timer"))  # live; the sync below must replay alone
        await asyncio.sleep(max(0.0, (parse(fleeting["expires_at"]) - datetime.datetime.now(datetime.UTC))
                                .total_seconds()) + 0.2)

        history = (await bob.api("GET", "/api/messages/", params={"with": alice.username})).json()
        assert [m["id"] for m in history["messages"]] == [kept["id"]]
        ids, _ = await sync(bob_tab, kept["id"] - 1)
        assert ids == [kept["id"]]
        [conversation] = (await bob.api("GET", "/api/conversations/")).json()["conversations"]
        assert conversation["last_message"]["id"] == kept["id"] and conversation["timer"] == 1
        assert conversation["unread"] == 1, conversation
        for viewer in (alice, bob):
            assert (await viewer.api("GET", photo["url"])).status_code == 404
        assert_error(await bob.api("DELETE", f"/api/messages/{fleeting['id']}/"), 404, "not_found")
        assert await db.fetchval("SELECT count(*) FROM messages WHERE id = $1", fleeting["id"]) == 1  # not swept


async def test_the_sweeper_deletes_rows_and_files_within_seconds_and_tells_both(
        server: Server, db: asyncpg.Connection, media_root: Path) -> None:
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    alice_tab, bob_tab = await alice.connect(), await bob.connect()
    await set_timer(bob, alice, 1)
    await alice_tab.expect("timer")
    note = await upload(alice, f"note-{uuid.uuid4().hex}\n".encode(), "note.txt")
    path = media_root / await db.fetchval("SELECT path FROM files WHERE id = $1", note["id"])
    sent = await alice.say(alice_tab, bob, "a short-lived note")
    with_file = (await alice.api("POST", "/api/send-message/",
                                 json={"to": bob.username, "message": "the file", "attachment": note["id"]})).json()
    expires = parse(with_file["expires_at"])
    await until_gone(db, [sent["id"], with_file["id"]])
    for _ in range(200):  # the file goes just after the rows' commit
        if not path.exists():
            break
        await asyncio.sleep(0.025)
    late = (datetime.datetime.now(datetime.UTC) - expires).total_seconds()
    assert not path.exists()
    assert late < 5  # the contract: rows and files within 5 seconds of expires_at
    for socket, peer in ((alice_tab, bob), (bob_tab, alice)):
        frames = [await deleted_frame(socket)]
        while sorted(i for f in frames for i in f["ids"]) != sorted([sent["id"], with_file["id"]]):
            frames.append(await deleted_frame(socket))
        assert all(f["with"] == peer.username and f["reason"] == "expired" for f in frames)


async def test_timers_expire_across_two_workers(database_url: str, settings: Settings,
                                                db: asyncpg.Connection) -> None:
    async with server_process(database_url, database_url, settings) as one, \
            server_process(database_url, database_url, settings) as two:
        alice, bob = await one.person("alice").register(), await one.person("bob").register()
        bob_there = await bob.on(two).connect()
        await set_timer(alice, bob, 1)
        assert (await bob_there.expect("timer"))["seconds"] == 1
        sent = (await alice.on(two).api("POST", "/api/send-message/",
                                        json={"to": bob.username, "message": "crosses"})).json()
        assert sent["expires_at"] is not None
        await until_gone(db, [sent["id"]])
        frame = await deleted_frame(bob_there)
        assert frame["ids"] == [sent["id"]] and frame["reason"] == "expired"


async def test_a_sweep_killed_before_unlinking_is_finished_by_the_next(
        own_database: str, tmp_path: Path) -> None:
    """SIGKILL between a sweep's commit and its unlinking leaves a doomed_files record (made
    here directly, as the kill would leave it); a restarted server unlinks the file. On a
    database and a disk of its own: the module's server would sweep it otherwise, and this
    one's sweep would take the module's files for orphans."""
    media_root = tmp_path / "media"
    database_url, settings = own_database, settings_for(own_database, media_root)
    async with own_connection(database_url) as db:
        await killed_mid_sweep_then_restarted(database_url, settings, db, media_root)


async def test_the_sweeper_forgets_a_doomed_file_already_gone_and_retries_a_stuck_one_later(
        own_database: str, tmp_path: Path) -> None:
    """Records a killed process left: one of a file already unlinked (killed before forgetting
    it), one of a file still there, one that cannot be unlinked (a directory in its place). The
    sweeper forgets the first two, unlinks the second, and puts the third off for
    STALE_DOOMED_S rather than trying (and logging) it every round."""
    media_root = tmp_path / "media"
    settings = settings_for(own_database, media_root, expiry_sweep_interval=0.2)
    gone, there, stuck = (media_root / "ef" / "gh" / f"efgh{uuid.uuid4().hex}" for _ in range(3))
    there.parent.mkdir(parents=True)
    there.write_bytes(b"sealed bytes of a file whose row is gone")
    stuck.mkdir()
    async with own_connection(own_database) as db:
        await db.execute("INSERT INTO doomed_files (path, doomed_at) SELECT unnest($1::text[]), now() - interval '1 minute'",
                         sorted(str(path.relative_to(media_root)) for path in (gone, there, stuck)))
        async with running_server(settings):
            for _ in range(100):
                if await db.fetchval("SELECT count(*) FROM doomed_files") == 1:
                    break
                await asyncio.sleep(0.05)
        record = await db.fetchrow("SELECT path, now() - doomed_at AS age FROM doomed_files")
    assert not there.exists() and stuck.is_dir()
    assert record["path"] == str(stuck.relative_to(media_root))
    assert record["age"] < datetime.timedelta(seconds=10)  # put off, not 1 minute old any more


async def killed_mid_sweep_then_restarted(database_url: str, settings: Settings, db: asyncpg.Connection,
                                          media_root: Path) -> None:
    leftover = media_root / "ab" / "cd" / f"abcd{uuid.uuid4().hex}"
    leftover.parent.mkdir(parents=True, exist_ok=True)
    leftover.write_bytes(b"sealed bytes of a file whose row is gone")
    await db.execute("INSERT INTO doomed_files (path, doomed_at) VALUES ($1, now() - interval '1 minute')",
                     str(leftover.relative_to(media_root)))
    env = {"EXPIRY_SWEEP_INTERVAL": "0.2", "MEDIA_ROOT": str(media_root)}
    async with server_process(database_url, database_url, settings, **env) as server:
        alice, bob = await server.person("alice").register(), await server.person("bob").register()
        await set_timer(alice, bob, 1)
        many = [(await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": f"#{i}"})).json()
                for i in range(300)]
        await asyncio.sleep(max(0.0, (parse(many[-1]["expires_at"]) - datetime.datetime.now(datetime.UTC))
                                .total_seconds()))
        os.kill(server.pid, signal.SIGKILL)  # mid-sweep, or just before it
    async with server_process(database_url, database_url, settings, **env):
        await until_gone(db, [m["id"] for m in many])
        for _ in range(100):
            if not leftover.exists():
                break
            await asyncio.sleep(0.05)
    assert not leftover.exists()
    assert await db.fetchval("SELECT count(*) FROM doomed_files") == 0


def stand_a_directory_in_place_of(path: Path) -> None:
    """A file the server can no longer unlink (EISDIR), as a disk that refuses would leave it."""
    path.unlink()
    path.mkdir()


async def test_a_file_a_logout_could_not_unlink_stays_recorded_and_the_logout_goes_on(
        own_database: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Logout's clearing records the files it deletes (doomed_files) in its own transaction,
    then unlinks them. When one unlink fails (a directory stands where the file was), its record
    stays for the sweeper, and nothing else waits on it: the other file goes, Bob hears
    `cleared`, and Alice's session ends. The rows, and with them the files' keys, are gone."""
    media_root = tmp_path / "media"
    async with running_server(settings_for(own_database, media_root)) as server, \
            own_connection(own_database) as db:
        alice, bob = await server.person("alice").register(), await server.person("bob").register()
        bob_tab = await bob.connect()
        notes = [await upload(alice, f"remember to unlink me {n}\n".encode(), f"note{n}.txt") for n in range(2)]
        for note in notes:
            await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "a note",
                                                                 "attachment": note["id"]})
        stuck, other = [await db.fetchval("SELECT path FROM files WHERE id = $1", note["id"]) for note in notes]
        stand_a_directory_in_place_of(media_root / stuck)
        assert (await alice.api("POST", "/api/logout/")).status_code == 200
        assert await db.fetchval("SELECT count(*) FROM files WHERE id = ANY($1::text[])", [n["id"] for n in notes]) == 0
        assert await db.fetchval("SELECT array_agg(path) FROM doomed_files") == [stuck]
        assert not (media_root / other).exists()
        assert (await bob_tab.expect("cleared", skip=("presence", "chat")))["with"] == alice.username
        assert (await alice.api("GET", "/api/user-profile/")).status_code == 401
        (media_root / stuck).rmdir()
    warnings = [r.getMessage() for r in caplog.records if r.name == "secure_link.media" and r.levelname == "WARNING"]
    is_a_directory = f"[Errno {errno.EISDIR}] {os.strerror(errno.EISDIR)}"
    assert any(m.startswith(f"could not unlink doomed file {stuck} ({is_a_directory}") for m in warnings), warnings


async def test_a_logout_whose_doomed_records_cannot_be_updated_still_ends(own_database: str, tmp_path: Path,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    """After the commit and the unlinking, the records' update failing (a trigger refuses it
    here) leaves them to the sweeper: the logout still answers, tells Bob and ends the session."""
    media_root = tmp_path / "media"
    async with running_server(settings_for(own_database, media_root)) as server, \
            own_connection(own_database) as db:
        alice, bob = await server.person("alice").register(), await server.person("bob").register()
        bob_tab = await bob.connect()
        note = await upload(alice, b"unlinked, then not forgotten\n", "note.txt")
        await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "a note", "attachment": note["id"]})
        path = await db.fetchval("SELECT path FROM files WHERE id = $1", note["id"])
        await refuse(db, "TRIGGER refuse BEFORE DELETE ON doomed_files FOR EACH STATEMENT")
        assert (await alice.api("POST", "/api/logout/")).status_code == 200
        assert (await bob_tab.expect("cleared", skip=("presence", "chat")))["with"] == alice.username
        assert (await alice.api("GET", "/api/user-profile/")).status_code == 401
        assert not (media_root / path).exists()
        assert await db.fetchval("SELECT array_agg(path) FROM doomed_files") == [path]  # the sweeper's now
    warned = [r for r in caplog.records if r.name == "secure_link.media" and r.levelname == "WARNING"]
    assert [r.getMessage() for r in warned] == ["could not update the doomed files' records; the sweeper will"]
    assert "refused by the test" in str(warned[0].exc_info[1])  # type: ignore[index]  # why, for the operator


async def test_a_logout_that_fails_at_its_last_step_leaves_the_conversation_and_its_timer(
        own_database: str, tmp_path: Path) -> None:
    """Logout's clearing is one transaction. When its last statement fails (here a trigger
    refuses the record of the attachment to unlink), every step before it rolls back (the
    conversation key, the message, its file, the timer's reset) and Alice stays logged in to
    try again."""
    media_root = tmp_path / "media"
    async with running_server(settings_for(own_database, media_root)) as server, \
            own_connection(own_database) as db:
        alice, bob = await server.person("alice").register(), await server.person("bob").register()
        await set_timer(alice, bob, 3600)
        note = await upload(alice, b"still on disk\n", "note.txt")
        sent = (await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "still here",
                                                                    "attachment": note["id"]})).json()
        await refuse(db, "TRIGGER refuse BEFORE INSERT ON doomed_files FOR EACH ROW")
        assert (await alice.api("POST", "/api/logout/")).status_code == 500
        assert (await bob.api("GET", f"/api/conversations/{alice.username}/timer/")).json()["seconds"] == 3600
        history = (await bob.api("GET", "/api/messages/", params={"with": alice.username})).json()
        assert [(m["id"], m["message"]) for m in history["messages"]] == [(sent["id"], "still here")]
        assert (await bob.api("GET", note["url"])).content == b"still on disk\n"
        await db.execute("DROP TRIGGER refuse ON doomed_files")
        assert (await alice.api("POST", "/api/logout/")).status_code == 200  # the same session, still live
        assert (await bob.api("GET", f"/api/conversations/{alice.username}/timer/")).json()["seconds"] == 0
        assert (await bob.api("GET", note["url"])).status_code == 404


# ---- delete for everyone ------------------------------------------------------

async def test_either_party_deletes_a_message_and_its_file_for_both(server: Server, db: asyncpg.Connection,
                                                                   media_root: Path) -> None:
    alice, bob, carol = [await server.person(n).register() for n in ("alice", "bob", "carol")]
    alice_tab, bob_tab = await alice.connect(), await bob.connect()
    photo = await upload(alice, image_bytes(), "photo.png")
    paths = await db.fetchrow("SELECT path, thumbnail_path FROM files WHERE id = $1", photo["id"])
    sent = (await alice.api("POST", "/api/send-message/",
                            json={"to": bob.username, "message": "oops", "attachment": photo["id"]})).json()
    kept = await alice.say(alice_tab, bob, "this stays")
    assert_error(await carol.api("DELETE", f"/api/messages/{sent['id']}/"), 404, "not_found")  # not hers
    answer = await bob.api("DELETE", f"/api/messages/{sent['id']}/")
    assert answer.status_code == 200 and answer.json() == {"deleted": {"id": sent["id"], "files": 1}}
    assert not (media_root / paths["path"]).exists() and not (media_root / paths["thumbnail_path"]).exists()
    assert (await alice.api("GET", photo["url"])).status_code == 404
    for socket, peer in ((alice_tab, bob), (bob_tab, alice)):
        frame = await deleted_frame(socket)
        assert frame == {"type": "deleted", "with": peer.username, "ids": [sent["id"]], "reason": "deleted"}
    history = (await alice.api("GET", "/api/messages/", params={"with": bob.username})).json()
    assert [m["id"] for m in history["messages"]] == [kept["id"]]
    assert_error(await bob.api("DELETE", f"/api/messages/{sent['id']}"), 404, "not_found")  # gone, no slash too
    assert_error(await bob.api("DELETE", f"/api/messages/{2**63 + 5}/"), 404, "not_found")


async def test_deleting_the_last_message_ends_the_conversation_and_its_key(own_database: str,
                                                                          media_root: Path) -> None:
    """Without a timer, a conversation whose last message is deleted has ended: its key goes
    with it (copies sealed under it open no more), the audit finds nothing left behind, and
    the next message begins a conversation with a new key. With a timer set, the
    conversation (and its key) lives on, as an expired one does."""
    settings = settings_for(own_database, media_root)
    env = {"DATABASE_URL": own_database, "MEDIA_ROOT": str(media_root), "SECRET_PEPPER": "x",
           "MASTER_KEY_FILE": str(settings.master_key_file)}
    async with running_server(settings) as server, own_connection(own_database) as db:
        alice, bob, carol = [await server.person(name).register() for name in ("alice", "bob", "carol")]

        async def keys_between(a: Person, b: Person) -> list[datetime.datetime]:
            return [row["created_at"] for row in await db.fetch(
                "SELECT created_at FROM conversation_keys WHERE low_user_id = $1 AND high_user_id = $2",
                *sorted((a.user["id"], b.user["id"])))]

        async def send(a: Person, b: Person, text: str) -> dict[str, Any]:
            return (await a.api("POST", "/api/send-message/", json={"to": b.username, "message": text})).json()

        only = await send(alice, bob, "the only one")
        [first_key] = await keys_between(alice, bob)
        assert (await bob.api("DELETE", f"/api/messages/{only['id']}/")).status_code == 200
        assert await keys_between(alice, bob) == []
        code, out, err = await run_cli("audit", **env)
        assert code == 0 and "nothing left behind" in out, out + err
        again = await send(alice, bob, "begun again")
        assert (await keys_between(alice, bob))[0] > first_key
        history = (await bob.api("GET", "/api/messages/", params={"with": alice.username})).json()
        assert [m["message"] for m in history["messages"]] == ["begun again"] and again["id"] > only["id"]

        await set_timer(alice, carol, 3600)
        timed = await send(alice, carol, "under a timer")
        assert (await alice.api("DELETE", f"/api/messages/{timed['id']}/")).status_code == 200
        assert len(await keys_between(alice, carol)) == 1  # the timer keeps the conversation
        assert (await run_cli("audit", **env))[0] == 0


async def test_a_delete_of_the_last_message_waits_for_a_send_in_flight_and_keeps_the_key(
        server: Server, db: asyncpg.Connection) -> None:
    """Alice's second message is being stored (the test holds its attachment's row, so the
    send statement waits there, its locks taken) when Bob deletes her first, the last
    committed one. The deletion must wait for the send: had it dropped the key on the strength
    of a snapshot without the new message, that message would be stored sealed with a
    destroyed key, unreadable for good (500 `undecryptable`)."""
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    first = (await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "first"})).json()
    photo = await upload(alice, image_bytes(), "photo.png")
    async with own_connection(server.settings.database_url or "") as holder:
        async with holder.transaction():
            await holder.execute("SELECT 1 FROM files WHERE id = $1 FOR UPDATE", photo["id"])
            second = asyncio.create_task(alice.api("POST", "/api/send-message/", json={
                "to": bob.username, "message": "second", "attachment": photo["id"]}))
            await eventually(lambda: waiting_for_a_lock(db, "WITH draft AS%"))  # insert_messages
            deletion = asyncio.create_task(bob.api("DELETE", f"/api/messages/{first['id']}/"))
            await eventually(lambda: locked_statements(db, 2))  # the deletion waits too, one way or another
        assert (await second).status_code == 201 and (await deletion).status_code == 200
    history = await bob.api("GET", "/api/messages/", params={"with": alice.username})
    assert history.status_code == 200, history.text
    assert [m["message"] for m in history.json()["messages"]] == ["second"]


async def locked_statements(db: asyncpg.Connection, at_least: int) -> bool:
    return await db.fetchval("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                             "AND datname = current_database()") >= at_least


async def test_a_delete_whose_file_cannot_be_unlinked_still_answers_and_tells_both(
        own_database: str, tmp_path: Path) -> None:
    """As with logout: the row and the file's key are gone, the stuck file's record stays for
    the sweeper, and the delete answers and reaches the other party."""
    media_root = tmp_path / "media"
    async with running_server(settings_for(own_database, media_root)) as server, \
            own_connection(own_database) as db:
        alice, bob = await server.person("alice").register(), await server.person("bob").register()
        alice_tab = await alice.connect()
        note = await upload(alice, b"a stuck note\n", "note.txt")
        sent = (await alice.api("POST", "/api/send-message/",
                                json={"to": bob.username, "message": "oops", "attachment": note["id"]})).json()
        path = await db.fetchval("SELECT path FROM files WHERE id = $1", note["id"])
        stand_a_directory_in_place_of(media_root / path)
        answer = await bob.api("DELETE", f"/api/messages/{sent['id']}/")
        assert answer.status_code == 200 and answer.json()["deleted"]["files"] == 1
        assert (await deleted_frame(alice_tab))["ids"] == [sent["id"]]
        assert await db.fetchval("SELECT array_agg(path) FROM doomed_files") == [path]
        (media_root / path).rmdir()


async def test_the_delete_frame_deletes_and_a_bad_one_answers_an_error_frame(server: Server) -> None:
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    alice_tab, bob_tab = await alice.connect(), await bob.connect()
    sent = await alice.say(alice_tab, bob, "take it back")
    await bob_tab.expect("chat")
    await alice_tab.send({"type": "delete", "id": sent["id"]})
    assert (await deleted_frame(bob_tab))["ids"] == [sent["id"]]
    for bad, code in (({"type": "delete", "id": sent["id"]}, "not_found"),
                      ({"type": "delete", "id": 0}, "not_found"),
                      ({"type": "delete", "id": -sent["id"]}, "not_found"),
                      ({"type": "delete", "id": 2**63 - 1}, "not_found"),
                      ({"type": "delete", "id": -(2**63)}, "not_found"),
                      ({"type": "delete", "id": 2**63}, "invalid_input"),
                      ({"type": "delete", "id": "one"}, "invalid_input"),
                      ({"type": "delete"}, "invalid_input"),
                      ({"type": "delete", "id": 2**70}, "invalid_input")):
        await alice_tab.send(bad)
        assert (await alice_tab.expect("error", skip=("deleted", "presence")))["code"] == code


# ---- retries of what is gone ---------------------------------------------------------

async def test_a_send_retried_after_its_message_is_gone_is_answered_gone_and_not_stored_again(
        own_database: str, media_root: Path) -> None:
    """A client resends what it never saw acknowledged (the web client does after a reconnect).
    While the message lives, a retry gets it back; once it is deleted for everyone, or has
    expired (before and after the sweep), the retry gets 410 `gone`, on REST and on the
    socket, and nothing is stored again: no new id, nothing for Bob."""
    settings = settings_for(own_database, media_root, expiry_sweep_interval=NO_SWEEP)
    async with running_server(settings) as server, own_connection(own_database) as db:
        alice, bob = await server.person("alice").register(), await server.person("bob").register()
        alice_tab = await alice.connect()

        async def retried(client_id: str, text: str) -> list[Any]:
            rest = await alice.api("POST", "/api/send-message/",
                                   json={"to": bob.username, "message": text, "client_id": client_id})
            await alice_tab.send({"type": "chat", "to": bob.username, "message": text, "client_id": client_id})
            return [rest, await alice_tab.expect("error", skip=("presence", "chat", "deleted", "timer"))]

        deleted = await alice.say(alice_tab, bob, "soon deleted", client_id="c-deleted")
        assert (await alice.api("POST", "/api/send-message/", json={
            "to": bob.username, "message": "soon deleted", "client_id": "c-deleted"})).json() == deleted
        assert (await bob.api("DELETE", f"/api/messages/{deleted['id']}/")).status_code == 200
        await deleted_frame(alice_tab)
        await set_timer(alice, bob, 1)
        await alice_tab.expect("timer")
        expiring = await alice.say(alice_tab, bob, "soon expired", client_id="c-expired")
        await asyncio.sleep(max(0.0, (parse(expiring["expires_at"]) - datetime.datetime.now(datetime.UTC))
                                .total_seconds()) + 0.2)
        unswept = await retried("c-expired", "soon expired")
        await db.execute("DELETE FROM messages WHERE id = $1", expiring["id"])  # as the sweeper would
        for rest, frame in [await retried("c-deleted", "soon deleted"), unswept, await retried("c-expired", "x")]:
            assert_error(rest, 410, "gone", "client_id")
            assert frame["code"] == "gone" and frame["client_id"] in ("c-deleted", "c-expired"), frame
        assert await db.fetchval("SELECT count(*) FROM messages WHERE sender_id = $1", alice.user["id"]) == 0
        fresh = await alice.say(alice_tab, bob, "a new one", client_id="c-new")  # a new client_id still sends
        assert fresh["id"] > expiring["id"]


async def test_what_is_kept_of_a_used_client_id_names_neither_sender_nor_client_id(
        server: Server, db: asyncpg.Connection) -> None:
    """The record that outlives a deleted message is a keyed hash and a day: no user id, no
    client_id, no message id, nothing a dump could join back to a person."""
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    sent = await alice.say(await alice.connect(), bob, "hello", client_id=f"c-{uuid.uuid4().hex}")
    assert (await alice.api("DELETE", f"/api/messages/{sent['id']}/")).status_code == 200
    columns = {row["column_name"] for row in await db.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'used_client_ids'")}
    assert columns == {"tag", "used_on"}
    tags = [row["tag"] for row in await db.fetch("SELECT tag FROM used_client_ids")]
    assert tags and all(len(tag) == 16 and sent["client_id"].encode() not in tag for tag in tags)


async def test_a_file_sent_twice_stays_until_its_last_message_goes(server: Server, db: asyncpg.Connection,
                                                                  media_root: Path) -> None:
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    note = await upload(alice, b"twice\n", "twice.txt")
    path = media_root / await db.fetchval("SELECT path FROM files WHERE id = $1", note["id"])
    first, second = [(await alice.api("POST", "/api/send-message/",
                                      json={"to": bob.username, "message": text, "attachment": note["id"]})).json()
                     for text in ("once", "again")]
    assert (await alice.api("DELETE", f"/api/messages/{first['id']}/")).json()["deleted"]["files"] == 0
    assert path.exists() and (await bob.api("GET", note["url"])).status_code == 200
    assert (await alice.api("DELETE", f"/api/messages/{second['id']}/")).json()["deleted"]["files"] == 1
    assert not path.exists()


# ---- nothing left behind ----------------------------------------------------------

def incompressible(length: int) -> str:
    """Two-byte letters in no pattern: PostgreSQL stores them uncompressed (TOAST's pglz gives
    up), so a marker after them stays whole on disk if it is stored in plain."""
    letters = [chr(code) for code in range(0x430, 0x450)] + [chr(code) for code in range(0x3b1, 0x3c9)]
    return "".join(random.choice(letters) for _ in range(length))


def files_holding(root: Path, markers: list[str]) -> list[tuple[str, str]]:
    """(file, marker) for each marker found in any file under `root`, in its bytes."""
    wanted = [marker.encode() for marker in markers]
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [(str(path), marker.decode()) for marker in wanted if marker in data]
    return found


async def test_no_marker_reaches_postgresqls_files_or_the_media_disk(tmp_path: Path) -> None:
    """On a private embedded PostgreSQL: messages short and long (parked for fan-out), a
    text file and an image's name in its pixels' metadata, each with a unique marker; after
    CHECKPOINT, every file of the data directory (heap, WAL, pg_notify) and MEDIA_ROOT is
    scanned, before and after Bob's logout wipes the conversation."""
    var, media = tmp_path / "var", tmp_path / "media"
    settings = settings_for("", media).replace(database_url=None, var_dir=var, master_key_file=var / "master-key")
    markers = [f"marker-{uuid.uuid4().hex}" for _ in range(4)]
    try:
        async with running_server(settings) as server:
            alice, bob = await server.person("alice").register(), await server.person("bob").register()
            alice_tab, bob_tab = await alice.connect(), await bob.connect()
            await alice.say(alice_tab, bob, f"short {markers[0]}")
            await alice.say(alice_tab, bob, incompressible(3950) + markers[1])  # parked: over NOTIFY's 8,000 bytes
            note = await upload(alice, f"{markers[2]}\n".encode() * 50, "note.txt")
            picture = await upload(alice, image_bytes("JPEG", comment=markers[3].encode()), "picture.jpg")
            for attachment in (note, picture):
                await alice.api("POST", "/api/send-message/",
                                json={"to": bob.username, "message": "see", "attachment": attachment["id"]})
            assert markers[2] in (await bob.api("GET", note["url"])).text  # it is all there, for them
            await bob_tab.expect("chat")
            await checkpoint(var)
            assert files_holding(var / "pgdata", markers) == []
            assert files_holding(media, markers) == []
            assert (await bob.api("POST", "/api/logout/")).status_code == 200
            await checkpoint(var)
            assert files_holding(var / "pgdata", markers) == []
            assert files_holding(media, markers) == []
    finally:
        devdb.stop_server(var)


async def checkpoint(var: Path) -> None:
    """Force every dirty page and the WAL to disk, so the scan sees what PostgreSQL keeps."""
    connection = await asyncpg.connect(devdb.with_database(devdb.start_server(var), devdb.DATABASE_NAME))
    try:
        await connection.execute("CHECKPOINT")
    finally:
        await connection.close()


async def test_without_the_master_key_no_stored_body_can_be_read(server: Server, db: asyncpg.Connection) -> None:
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    await alice.say(await alice.connect(), bob, "for Bob's eyes")
    row = await db.fetchrow("SELECT body, sealed_body FROM messages WHERE sender_id = $1", alice.user["id"])
    assert row["body"] == "" and b"Bob's eyes" not in row["sealed_body"]
    wrapped = await db.fetchval("SELECT wrapped_key FROM conversation_keys WHERE low_user_id = $1 OR high_user_id = $1",
                                alice.user["id"])
    stranger = Keyring([new_master_key()])
    with pytest.raises(Exception):  # noqa: B017 - any refusal will do: the point is that nothing opens
        stranger.unwrap(wrapped, b"conversation:%d:%d" % tuple(sorted((alice.user["id"], bob.user["id"]))))


# ---- the audit ---------------------------------------------------------------------

async def test_the_audit_finds_each_kind_of_leftover_and_passes_a_clean_deployment(
        own_database: str, tmp_path: Path) -> None:
    """A deployment with no sweeper running (so nothing is fixed behind the audit's back):
    clean at first; then one leftover of each kind, each named; then clean again once removed."""
    media = tmp_path / "media"
    settings = settings_for(own_database, media, expiry_sweep_interval=NO_SWEEP)
    env = {"DATABASE_URL": own_database, "MEDIA_ROOT": str(media), "SECRET_PEPPER": "x",
           "MASTER_KEY_FILE": str(settings.master_key_file)}
    async with running_server(settings) as server, own_connection(own_database) as db:
        alice, bob = await server.person("alice").register(), await server.person("bob").register()
        note = await upload(alice, b"a note\n", "note.txt")
        await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "hi",
                                                            "attachment": note["id"]})
        code, out, err = await run_cli("audit", **env)
        assert code == 0, out + err
        assert "nothing left behind" in out

        carol = await server.person("carol").register()  # never talks: a key of hers is a leftover
        await set_timer(alice, bob, 1)
        expired = (await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "x"})).json()
        path = await db.fetchval("SELECT path FROM files WHERE id = $1", note["id"])
        stray = media / "zz" / "zz" / "zzstray"
        stray.parent.mkdir(parents=True)
        stray.write_bytes(b"left behind")
        os.utime(stray, (0, 0))  # old: not an upload under way
        (media / path).rename(media / (path + ".moved"))
        os.utime(media / (path + ".moved"), (0, 0))
        await db.execute("INSERT INTO conversation_keys (low_user_id, high_user_id, wrapped_key, master_key_id) "
                         "SELECT $1, $2, wrapped_key, master_key_id FROM conversation_keys LIMIT 1",
                         *sorted((alice.user["id"], carol.user["id"])))
        await asyncio.sleep(max(0.0, (parse(expired["expires_at"]) - datetime.datetime.now(datetime.UTC))
                                .total_seconds()) + 5.2)
        code, out, _ = await run_cli("audit", **env)
        assert code == 1
        assert f"message {expired['id']}" in out
        assert "zz/zz/zzstray" in out and f"{path}.moved" in out  # a file without a row, twice
        assert f"file {note['id']}: {path}" in out  # a row without its file
        low, high = sorted((alice.user["id"], carol.user["id"]))
        assert f"users {low} and {high}" in out
