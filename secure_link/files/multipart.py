"""Reading an upload's body: stream a multipart form into a temp file, then say what the file is.

The body is parsed as it arrives (python-multipart's `MultipartParser` over
`request.stream()`), the file part goes to a temp file beside its destination
in writes of `FLUSH_BYTES`, off the event loop, hashed and encrypted on the way
(encryption/sealedfile.py); the body is never held in memory, never written twice, and
never written in plaintext (docs/media.md, stack-notes "Uploads"). What a
file is comes from its bytes, never from its name or the declared type.
"""

from __future__ import annotations

import codecs
import dataclasses
import re
import unicodedata
from pathlib import Path
from typing import IO
from collections.abc import AsyncIterator, Mapping

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from secure_link.encryption import sealedfile
from secure_link.errors import AppError, invalid

FLUSH_BYTES = 512 * 1024        # stack-notes: 64 KiB writes cost ~150 µs per thread hop
FORM_OVERHEAD = 64 * 1024       # part headers and small fields, on top of MAX_UPLOAD_BYTES
MAX_FIELD_BYTES = 256
FIELDS = ("purpose",)           # other non-file fields are read past and dropped
MAX_NAME_CHARS = 255
_TEXT_CHUNK = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Kind:
    """A type we accept, as recognised from the bytes; `image` names Pillow's decoder."""

    content_type: str
    extensions: tuple[str, ...]
    image: str | None = None


PNG = Kind("image/png", (".png",), "PNG")
JPEG = Kind("image/jpeg", (".jpg", ".jpeg"), "JPEG")
GIF = Kind("image/gif", (".gif",), "GIF")
WEBP = Kind("image/webp", (".webp",), "WEBP")
PDF = Kind("application/pdf", (".pdf",))
ZIP = Kind("application/zip", (".zip",))
TEXT = Kind("text/plain", (".txt", ".md", ".log", ".csv"))
EXTENSIONS = {kind.content_type: kind.extensions for kind in (PNG, JPEG, GIF, WEBP, PDF, ZIP, TEXT)}

# (offset, magic bytes, kind): the first match wins; WebP also needs "RIFF" at 0.
MAGIC: tuple[tuple[int, bytes, Kind], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", PNG),
    (0, b"\xff\xd8\xff", JPEG),
    (0, b"GIF87a", GIF),
    (0, b"GIF89a", GIF),
    (8, b"WEBP", WEBP),
    (0, b"%PDF-", PDF),
    (0, b"PK\x03\x04", ZIP),
    (0, b"PK\x05\x06", ZIP),   # an empty archive
)
_TEXT_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_WINDOWS_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\.|$)", re.IGNORECASE)
_WINDOWS_FORBIDDEN = re.compile(r'[<>:"|?*]')


@dataclasses.dataclass
class Received:
    """A file part safely on disk (`path`, a temp file) and the form's small fields."""

    path: Path
    size: int = 0
    sha256: str = ""
    filename: str | None = None
    has_file: bool = False
    fields: dict[str, str] = dataclasses.field(default_factory=dict)


class _Form:
    """python-multipart callbacks: route part data to the file buffer or a small field."""

    def __init__(self, received: Received, max_file_bytes: int) -> None:
        self.received = received
        self.max_file_bytes = max_file_bytes
        self.buffer = bytearray()
        self.complete = False
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._disposition = b""
        self._in_file = False
        self._field: str | None = None
        self._value = bytearray()

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._part_begin, "on_header_field": self._header_field_data,
            "on_header_value": self._header_value_data, "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished, "on_part_data": self._part_data,
            "on_part_end": self._part_end, "on_end": self._end,
        }

    def _part_begin(self) -> None:
        self._disposition, self._field, self._in_file = b"", None, False

    # The parser reuses its buffer: copy data[start:end] before returning.
    def _header_field_data(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        if self._header_name.strip().lower() == b"content-disposition":
            self._disposition = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition.decode("latin-1"))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if name != "file":
            self._field, self._value = (name if name in FIELDS else None), bytearray()
            return
        if self.received.has_file:
            raise invalid({"file": "send one file per upload"})
        self.received.has_file = self._in_file = True
        if b"filename" in options:
            self.received.filename = options[b"filename"].decode("utf-8", "replace")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self.buffer += memoryview(data)[start:end]
            self.received.size += end - start
            if self.received.size > self.max_file_bytes:
                raise too_large(self.max_file_bytes)
        elif self._field is not None and len(self._value) <= MAX_FIELD_BYTES:
            self._value += data[start:min(end, start + MAX_FIELD_BYTES + 1)]

    def _part_end(self) -> None:
        if self._field is not None:
            self.received.fields.setdefault(self._field, self._value.decode("utf-8", "replace"))
        self._field, self._in_file = None, False

    def _end(self) -> None:
        self.complete = True


def too_large(limit: int) -> AppError:
    """413 for a body or file over its limit."""
    return AppError(413, "too_large", f"The file is over the upload limit of {limit} bytes.")


def _parser_for(headers: Mapping[str, str], form: _Form) -> MultipartParser:
    media_type, options = parse_options_header(headers.get("content-type", ""))
    if media_type != b"multipart/form-data" or not options.get(b"boundary"):
        raise AppError(415, "unsupported_media_type", "Send the upload as multipart/form-data.")
    try:
        return MultipartParser(options[b"boundary"], form.callbacks())  # type: ignore[arg-type]
    except FormParserError:
        raise AppError(415, "unsupported_media_type", "The multipart boundary is invalid.") from None


async def receive(headers: Mapping[str, str], stream: AsyncIterator[bytes], temp_path: Path,
                  max_file_bytes: int, key: bytes, aad: bytes) -> Received:
    """Stream the form's `file` part to `temp_path`, sealed with `key` as it arrives (removed again on
    any failure): no plaintext byte of an upload is ever written to disk (docs/media.md)."""
    received = Received(temp_path)
    form = _Form(received, max_file_bytes)
    parser = _parser_for(headers, form)
    body_limit = max_file_bytes + FORM_OVERHEAD
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > body_limit:
        raise too_large(max_file_bytes)
    sink = sealedfile.AsyncWriter(temp_path, key, aad)
    await sink.open()
    try:
        await _pump(stream, parser, form, sink, body_limit)
        await sink.close()
    except BaseException:
        sink.discard()
        raise
    received.sha256 = sink.sha256
    if not received.has_file:
        temp_path.unlink(missing_ok=True)
    return received


async def _pump(stream: AsyncIterator[bytes], parser: MultipartParser, form: _Form,
                sink: sealedfile.AsyncWriter, body_limit: int) -> None:
    total = 0
    async for chunk in stream:
        total += len(chunk)
        if total > body_limit:
            raise too_large(form.max_file_bytes)
        try:
            parser.write(chunk)
        except FormParserError:
            raise invalid({"file": "the multipart body is malformed"}) from None
        if len(form.buffer) >= FLUSH_BYTES:
            await sink.write(form.buffer)
    await sink.write(form.buffer)
    if not form.complete:
        raise invalid({"file": "the multipart body ended early"})


# ---- what the bytes are ---------------------------------------------------

def sniff(file: IO[bytes]) -> Kind | None:
    """The kind by magic bytes, else plain text if it is clean UTF-8; None for anything else."""
    head = file.read(16)
    for offset, magic, kind in MAGIC:
        if head[offset:offset + len(magic)] == magic and (kind is not WEBP or head[:4] == b"RIFF"):
            return kind
    file.seek(0)
    return TEXT if _is_plain_text(file) else None


def _is_plain_text(file: IO[bytes]) -> bool:
    """UTF-8, no controls but tab and newlines, and not markup (an SVG or HTML page is not text)."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    seen_content = False
    while True:
        chunk = file.read(_TEXT_CHUNK)
        try:
            text = decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError:
            return False
        if _TEXT_CONTROLS.search(text):
            return False
        if not seen_content and (stripped := text.lstrip(" \t\r\n\ufeff")):
            if stripped.startswith("<"):
                return False
            seen_content = True
        if not chunk:
            return True


def clean_name(raw: str | None, content_type: str) -> str:
    """The user's file name as harmless metadata: last path part, no controls, ≤255 characters,
    and an extension that matches what is served (`evil.html` sent as text becomes `evil.html.txt`)."""
    name = unicodedata.normalize("NFC", (raw or "").replace("\\", "/").rsplit("/", 1)[-1])
    name = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf", "Cs"))
    name = _WINDOWS_FORBIDDEN.sub("_", name).strip(" .")
    if _WINDOWS_RESERVED.match(name):
        name = "_" + name
    extensions = EXTENSIONS[content_type]
    _, dot, extension = name.rpartition(".")
    if not dot or "." + extension.lower() not in extensions:
        name = (name or "file") + extensions[0]
    return _shorten(name)


def _shorten(name: str) -> str:
    if len(name) <= MAX_NAME_CHARS:
        return name
    stem, _, extension = name.rpartition(".")
    return stem[:MAX_NAME_CHARS - len(extension) - 1] + "." + extension
