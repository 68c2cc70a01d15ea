"""Logs for machines and for people: JSON lines, or readable lines on a terminal.

LOG_FORMAT=auto (the default) writes readable lines when stderr is a terminal
(`make run`) and JSON lines otherwise (a service, a container, a pipe); `json`
or `text` force one. Neither carries colour codes, so JSON stays parseable.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import IO, Any

# Record attributes that are not `extra=` fields; uvicorn's `color_message` is its message with ANSI codes.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "color_message", "taskName"}


class JsonFormatter(logging.Formatter):
    """Time, level, logger, message, any `extra=` fields, and the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """`12:00:01 INFO secure_link.access request method=GET path=/ status=200`, plus the traceback.

    A request path is the client's to choose, and `%0A` decodes to a line break: the message
    and every field are escaped (`\\n`, `\\x1b`, `\\u2028`), and a field value holding a
    space, a quote or `=` is quoted, so a client can neither start a line nor add a field.
    """

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={_field_value(v)}" for k, v in vars(record).items() if k not in _STANDARD)
        line = (f"{time.strftime('%H:%M:%S', time.localtime(record.created))} {record.levelname:<7} "
                f"{record.name} {escape(record.getMessage())}" + (f" {fields}" if fields else ""))
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


# Controls, line and paragraph separators, and text-direction controls (which reorder what a terminal shows).
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def escape(text: str) -> str:
    """`text` on one line as written, every unsafe character spelled as a Python escape."""
    return _UNSAFE.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)


def _field_value(value: object) -> str:
    text = str(value)
    if not text or any(ch in text for ch in ' "='):
        text = json.dumps(text, ensure_ascii=False)  # quoted; C0 controls escaped, the rest below
    return escape(text)


def resolved_format(log_format: str, stream: IO[str]) -> str:
    """`auto` is text for a person at a terminal, JSON for everything else."""
    if log_format != "auto":
        return log_format
    return "text" if stream.isatty() else "json"


def log_config(level: str, log_format: str = "auto") -> dict[str, Any]:
    """A logging.dictConfig for uvicorn's `log_config=`: every logger to stderr, as JSON or text."""
    handler = {"class": "logging.StreamHandler", "formatter": resolved_format(log_format, sys.stderr),
               "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}, "text": {"()": TextFormatter}},
        "handlers": {"default": handler},
        "root": {"handlers": ["default"], "level": level.upper()},
        "loggers": {"uvicorn.access": {"level": "WARNING"}},
    }
