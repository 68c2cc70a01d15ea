"""Attachments and the send statement under pressure: retries, other users, a logout mid-send."""

from __future__ import annotations

import asyncio

import asyncpg

from ..story import PNG, Server, upload


async def test_a_retry_cannot_claim_a_new_file(server: Server, db: asyncpg.Connection) -> None:
    """Found in review: the retried client_id used to mark the new file as used."""
    alice, bob, carol = [await server.person(n).register() for n in ("alice", "bob", "carol")]
    first = await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "hi", "client_id": "c1"})
    file = await upload(alice, PNG, "pic.png")
    retry = await alice.api("POST", "/api/send-message/",
                            json={"to": bob.username, "message": "hi", "client_id": "c1", "attachment": file["id"]})
    assert retry.status_code == 200 and retry.json() == first.json()
    assert await db.fetchval("SELECT used_with FROM files WHERE id = $1", file["id"]) is None
    to_carol = await alice.api("POST", "/api/send-message/",
                               json={"to": carol.username, "message": "for you", "attachment": file["id"]})
    assert to_carol.status_code == 201 and to_carol.json()["attachment"]["id"] == file["id"]


async def test_a_send_waiting_for_a_logout_holds_no_file_lock(server: Server, database_url: str) -> None:
    """Found in review: the file row was locked before the user locks, deadlocking with logout."""
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    file = await upload(alice, PNG, "pic.png")
    sent = {"to": bob.username, "message": "again", "attachment": file["id"]}
    assert (await alice.api("POST", "/api/send-message/", json=sent)).status_code == 201
    logout = await asyncpg.connect(database_url)  # plays logout's first step: Bob's send lock
    probe = await asyncpg.connect(database_url)
    try:
        transaction = logout.transaction()
        await transaction.start()
        await logout.execute("SELECT pg_advisory_xact_lock(7001, $1::int)", bob.user["id"])
        sending = asyncio.create_task(alice.api("POST", "/api/send-message/", json=sent))
        done, _ = await asyncio.wait([sending], timeout=0.5)
        assert not done, "the send should wait for Bob's lock"
        async with probe.transaction():
            locked = await probe.fetchval("SELECT id FROM files WHERE id = $1 FOR UPDATE SKIP LOCKED", file["id"])
        assert locked == file["id"], "the waiting send already holds the file row"
        await transaction.commit()
        assert (await sending).status_code == 201
    finally:
        await logout.close()
        await probe.close()
