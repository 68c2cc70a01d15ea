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
from pathlib import Path
from urllib.parse import quote

import pytest

from secure_link.ops.logs import JsonFormatter, TextFormatter, log_config, resolved_format

from ..conftest import database_refusing, running_server, server_process, settings_for
from ..story import Server, sample, scrape, sync


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
    # one per user (revocations come on it too), besides `sessions`, which the worker hears for its life
    assert sample(during, "secure_link_fanout_channels") - sample(before, "secure_link_fanout_channels") == 2
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


FORGED = "12:00:01 INFO    secure_link.access request method=DELETE status=200 user=alice"  # no `/`: one path segment
BREAKS = ("\n", "\r", "\x0b", "\x85", "\u2028")  # what str.splitlines, and many a log viewer, breaks lines at


async def test_a_path_cannot_forge_a_line_or_a_field_of_the_text_log(pg_server_url: str, own_database: str,
                                                                     media_root: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """Mallory picks her paths, and `%0A` decodes to a line break: with LOG_FORMAT=text it started a
    line of her own in the operator's log, in the access line and in the warning an outage logs
    with the path (Starlette's URL drops \\n, \\r and \\t there, not the other breaks). Each
    record is one line now, every break spelled out, and the path quoted with what it holds."""
    caplog.set_level(logging.INFO, logger="secure_link")
    async with running_server(settings_for(own_database, media_root)) as server:
        mallory = await server.person("mallory").register()
        async with server.client() as http:
            for line_break in BREAKS:
                await http.get("/api/nowhere" + quote(line_break + FORGED))
        async with database_refusing(pg_server_url, own_database):
            for line_break in BREAKS:
                await mallory.api("GET", f"/api/conversations/x{quote(line_break + FORGED)}/timer/")
    forging = [r for r in caplog.records if FORGED in r.getMessage() or FORGED in str(getattr(r, "path", ""))]
    assert {r.name for r in forging} == {"secure_link.access", "secure_link"}  # the access lines, app.py's warnings
    assert len(forging) == 3 * len(BREAKS)
    for line in map(TextFormatter().format, forging):
        assert line.splitlines() == [line], line
        if " path=" in line:  # the forged fields stay inside the quoted path
            assert re.search(r' path="/api/[^"]*12:00:01 INFO [^"]* status=200 user=alice[^"]*" ', line), line


def test_text_logs_spell_out_what_a_terminal_would_obey() -> None:
    """Escape sequences, separators and text-direction controls, in the message and in fields."""
    tricky = "\x1b[2J\u2028\u202eevil\x85"
    line = TextFormatter().format(record(path=tricky, note=""))
    assert line.endswith(' path=\\x1b[2J\\u2028\\u202eevil\\x85 note=""'), line
    message = logging.LogRecord("secure_link", logging.WARNING, __file__, 1, "on %s", (tricky,), None)
    assert TextFormatter().format(message).endswith("on \\x1b[2J\\u2028\\u202eevil\\x85")
