"""JSON in and out (wire.py): orjson writes what the standard library wrote, byte for byte, and
reads what it read, so a frame's refusal keeps its code and message; a Message is encoded once
and its `ack` and `chat` frames are built around that text.
"""

from __future__ import annotations

import datetime
import json

import pytest
from starlette.responses import JSONResponse as StarletteJSONResponse

from secure_link.chat.messages import stored_message
from secure_link.chat.writer import Pending
from secure_link.fanout import events
from secure_link.http import openapi
from secure_link.wire import Encoded, JSONResponse, dumps, encoded, loads

# What the server sent before orjson: compact, non-ASCII as is.
def stdlib(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


AWKWARD = ['plain', 'é 日本語 👋', '"quoted" \\ back/slash', 'line\nbreak\ttab\x01\x1f', '\u2028\u2029 separators',
           '</script><!--', '\x7f del', '']


def stored(body: str, client_id: str | None, attachment: bool) -> Encoded:
    """A Message as the writer shapes it after a commit: a row of `insert_messages` and its draft."""
    sent = datetime.datetime(2026, 12, 8, 9, 30, 1, 123456, tzinfo=datetime.UTC)
    row = {"id": 2**40 + 7, "sent_at": sent, "expires_at": sent if attachment else None,
           "file_id": "f" * 32 if attachment else None, "file_name": "naïve \"name\".png", "file_size": 2**33,
           "file_content_type": "image/png", "file_width": 640, "file_height": 480, "file_thumbnail_path": "x"}
    pending = Pending(1, "alice", "bob", body, client_id, None, "a" * 32, None)  # type: ignore[arg-type]
    return stored_message(pending, row)  # type: ignore[arg-type]


@pytest.mark.parametrize("body", AWKWARD)
@pytest.mark.parametrize("client_id", [None, "c-1", "ünï \"q\""])
@pytest.mark.parametrize("attachment", [False, True])
def test_ack_and_chat_frames_are_the_bytes_json_wrote_and_read_as_the_contract_says(
        body: str, client_id: str | None, attachment: bool) -> None:
    message = stored(body, client_id, attachment)
    as_dict = dict(message)
    ack, chat = events.ack(client_id, message), events.chat(message, skip="a" * 32)
    assert ack.frame == stdlib({"type": "ack", "client_id": client_id, "message": as_dict})
    assert chat.frame == stdlib({"type": "chat", "message": as_dict})
    assert message.text == stdlib(as_dict)  # the one encoding both frames reuse
    assert json.loads(ack.frame) == {"type": "ack", "client_id": client_id, "message": as_dict}  # docs/api.md
    assert json.loads(chat.frame) == {"type": "chat", "message": as_dict}
    assert set(as_dict) == {"id", "from", "to", "message", "attachment", "client_id", "sent_at", "expires_at"}
    assert (chat.kind, chat.skip, chat.message_id) == ("chat", "a" * 32, 2**40 + 7)
    assert events.opened(chat.envelope()) == chat  # the header travels beside the frame, unread


def test_a_message_is_encoded_once_and_reused_by_both_frames_and_the_rest_answer() -> None:
    """The Message's text is what every frame and the REST answer hold: a dict that says one
    thing and a text that says another would show here (the text wins, by design)."""
    message = stored("hello", "c-1", False)
    message.text = message.text.replace("hello", "HELLO")  # a stand-in for 'encoded again'
    assert '"message":"HELLO"' in events.ack("c-1", message).frame
    assert '"message":"HELLO"' in events.chat(message).frame
    assert b'"message":"HELLO"' in JSONResponse(message).body


@pytest.mark.parametrize("value", [
    {"type": "pong"}, {"type": "presence", "user": "ünï", "online": True}, {"n": -(2**63), "m": 2**64 - 1},
    {"nested": [{"a": None}, [], {}], "text": AWKWARD}, "just a string", None, [1, "two", False],
])
def test_dumps_writes_what_json_wrote(value: object) -> None:
    assert dumps(value) == stdlib(value)


def test_every_other_frame_is_the_bytes_json_wrote() -> None:
    frames = [events.read("ünï", 5), events.typing("bob"), events.presence("bob", online=False),
              events.profile({"username": "bob", "avatar": None}), events.cleared("bob"), events.timer("bob", 60, "al"),
              events.deleted("bob", [1, 2], "expired"), events.ready({"username": "é"}), events.synced(9),
              events.resync(), events.pong()]
    for frame in frames:
        assert frame.frame == stdlib(json.loads(frame.frame))


# (text, what json.loads read): orjson reads these differently or not at all, and the refusals
# were written against json's reading
READ_AS_JSON_READ = [
    ('{"type": "chat", "message": "\\ud800"}', {"type": "chat", "message": "\ud800"}),  # take: "no lone surrogates"
    ('{"type": "sync", "since": 100000000000000000000}', {"type": "sync", "since": 10**20}),  # take: "is out of range"
    ('{"type": "delete", "id": -9999999999999999999}', {"type": "delete", "id": -9999999999999999999}),
    ('{"type": "sync", "since": 1e400}', {"type": "sync", "since": float("inf")}),  # take: "must be an integer"
    ('{"type": "chat", "message": "hi", "message": "last wins"}', {"type": "chat", "message": "last wins"}),
    ('  {"type": "ping"}\n', {"type": "ping"}),
    ('{"type": "sync", "since": 1.5}', {"type": "sync", "since": 1.5}),
]


@pytest.mark.parametrize(("text", "read"), READ_AS_JSON_READ)
def test_loads_reads_what_json_read(text: str, read: object) -> None:
    assert loads(text) == read == json.loads(text)
    assert loads(text.encode("utf-8")) == read  # REST bodies come as bytes
    assert [type(value) for value in loads(text).values()] == [type(value) for value in read.values()]  # type: ignore[union-attr]


@pytest.mark.parametrize("text", ["not json", "", "{", '{"a": 1,}', "[" * 5000 + "]" * 5000, '{"a": "\x01"}',
                                  '\ufeff{}', '{"n": ' + "9" * 5000 + "}",
                                  '{"type": "sync", "since": NaN}', '{"a": Infinity}', '[-Infinity]'])
def test_loads_refuses_what_is_not_json(text: str) -> None:
    """NaN and Infinity were read by json (then refused by field); they are not JSON (RFC 8259)."""
    with pytest.raises((ValueError, RecursionError)):
        loads(text)


def test_utf16_bodies_are_still_read_as_json_read_them() -> None:
    body = json.dumps({"type": "ping"}).encode("utf-16")
    assert loads(body) == json.loads(body) == {"type": "ping"}


def test_rest_answers_are_the_bytes_starlettes_json_response_wrote() -> None:
    for content in [{"user": {"username": "é", "avatar": None}}, dict(stored("ünï", "c", True)), openapi.document(),
                    {"sessions": [{"id": 1, "current": True}]}]:
        assert JSONResponse(content).body == StarletteJSONResponse(content).body
    message = stored("ünï", "c", True)
    assert JSONResponse(message).body == StarletteJSONResponse(dict(message)).body


def test_encoded_keeps_the_object() -> None:
    value = {"b": 1, "a": [None]}
    assert encoded(value) == value and encoded(value).text == stdlib(value)
