"""What an operator sees: metrics summed over workers, request ids, and logs for people and machines.

Alice and Bob chat; the operator scrapes `/metrics` and follows Alice's
message from the access log line of her send to its delivery.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re

import pytest

from secure_link.logs import JsonFormatter, TextFormatter, log_config, resolved_format

from .conftest import server_process
from .story import Server, sample, scrape, sync


async def test_metrics_count_sockets_messages_deliveries_and_errors(server: Server) -> None:
    before = await scrape(server)
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    alice_tab, bob_tab = await alice.connect(), await bob.connect()
    for n in range(3):
        await alice.say(alice_tab, bob, f"hello {n}")
        await bob_tab.expect("chat")
    await alice_tab.send({"type": "typing", "to": bob.username})
    await bob_tab.expect("typing", skip=())  # handed to Bob's socket too, but no message
    await alice.api("GET", "/api/messages/")  # 422: `with` is required
    await alice_tab.send("{not json")
    await alice_tab.expect("error")
    during = await scrape(server)
    assert sample(during, "secure_link_websockets_open") - sample(before, "secure_link_websockets_open") == 2
    assert sample(during, "secure_link_messages_stored_total") - sample(before, "secure_link_messages_stored_total") == 3
    delivered = sample(during, "secure_link_messages_delivered_total") - sample(before, "secure_link_messages_delivered_total")
    assert delivered == 3  # chat frames to Bob; Alice's own socket was the sender (it got acks)
    sends = sample(during, "secure_link_send_seconds_count") - sample(before, "secure_link_send_seconds_count")
    took = sample(during, "secure_link_send_seconds_sum") - sample(before, "secure_link_send_seconds_sum")
    assert sends == 3 and 0 < took < 3 * 60  # durations, each well under a minute: not timestamps
    assert sample(during, "secure_link_errors_total", '{code="invalid_input"}') >= 1
    bad_json = '{code="bad_json"}'  # a socket's refusals are counted as requests' are
    assert sample(during, "secure_link_errors_total", bad_json) - sample(before, "secure_link_errors_total", bad_json) == 1
    assert sample(during, "secure_link_db_pool_connections", '{state="in_use"}') >= 0
    assert sample(during, "secure_link_fanout_channels") == 2  # one per user: revocations come on it too
    assert sample(during, "secure_link_send_batch_size_count") >= 1  # the writer's commits
    assert sample(during, "secure_link_send_queue") == 0
    await alice_tab.close()
    await bob_tab.close()
    for _ in range(50):
        after = await scrape(server)
        if sample(after, "secure_link_websockets_open") == sample(before, "secure_link_websockets_open"):
            break
        await asyncio.sleep(0.05)
    assert sample(after, "secure_link_websockets_open") == sample(before, "secure_link_websockets_open")


async def test_metrics_of_several_workers_are_summed(database_url: str, settings) -> None:  # type: ignore[no-untyped-def]
    """Two workers on one port: whichever answers /metrics counts every socket and message."""
    async with server_process(database_url, database_url, settings, workers=2) as server:
        alice, bob = await server.person("alice").register(), await server.person("bob").register()
        tabs = [await person.connect() for person in (alice, bob) for _ in range(3)]
        for n in range(4):
            await alice.say(tabs[0], bob, f"hi {n}")
        for _ in range(6):  # several scrapes land on both workers
            text = await scrape(server)
            assert sample(text, "secure_link_websockets_open") == 6
            assert sample(text, "secure_link_messages_stored_total") == 4


async def test_a_send_is_followed_from_its_request_id_to_its_delivery(server: Server,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    bob_tab = await bob.connect()
    with caplog.at_level(logging.DEBUG, logger="secure_link"):
        answer = await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "trace me"},
                                 headers={"X-Request-ID": "req-from-nginx-1"})
        message_id = (await bob_tab.expect("chat"))["message"]["id"]
    assert answer.headers["X-Request-ID"] == "req-from-nginx-1"
    access = [r for r in caplog.records if r.name == "secure_link.access" and getattr(r, "request_id", "") == "req-from-nginx-1"]
    assert access and access[0].message_id == message_id  # type: ignore[attr-defined]
    delivered = [r for r in caplog.records if r.getMessage() == "message delivered"]
    assert [r.message_id for r in delivered] == [message_id]  # type: ignore[attr-defined]
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="secure_link"):  # a sync's replay is a delivery too
        later_tab = await bob.connect()
        assert (await sync(later_tab, message_id - 1))[0] == [message_id]
    delivered = [r for r in caplog.records if r.getMessage() == "message delivered"]
    assert [r.message_id for r in delivered] == [message_id]  # type: ignore[attr-defined]
    async with server.client() as http:
        generated = (await http.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})).headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{16}", generated)


def record(**extra: object) -> logging.LogRecord:
    entry = logging.LogRecord("secure_link.access", logging.INFO, __file__, 1, "request", None, None)
    entry.__dict__.update(extra)
    return entry


def test_logs_are_json_for_machines_and_lines_for_people() -> None:
    line = JsonFormatter().format(record(status=200, path="/api/login/"))
    assert json.loads(line)["status"] == 200 and "\x1b" not in line
    text = TextFormatter().format(record(status=200, path="/api/login/"))
    assert "INFO" in text and "status=200 path=/api/login/" in text and "\x1b" not in text
    assert resolved_format("auto", io.StringIO()) == "json"  # a pipe, a file, a journal
    assert resolved_format("text", io.StringIO()) == "text"
    terminal = io.StringIO()
    terminal.isatty = lambda: True  # type: ignore[method-assign]
    assert resolved_format("auto", terminal) == "text"  # `make run` in a terminal
    assert log_config("info", "text")["handlers"]["default"]["formatter"] == "text"
