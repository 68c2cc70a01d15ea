"""Files encrypted in segments, so they can be written as they stream in and read from any byte.

A sealed file is a 15-byte header (magic, segment size, a random 7-byte nonce
prefix) and then the plaintext in segments of `SEGMENT_BYTES` (64 KiB), each
sealed with AES-256-GCM on its own: 16 bytes of tag each, no nonce stored.
Segment i's nonce is the prefix, i as 4 big-endian bytes, and 1 for the
last segment (0 otherwise), as in Tink's streaming AEAD and the STREAM
construction (Hoang, Reyhanitabar, Rogaway, Vizár 2015): a segment moved
elsewhere fails its nonce, a file cut at a segment boundary ends on a segment
not marked last, and the header is in every segment's associated data, with
the caller's context (the file id and its role). Every segment before the
last is full, and only an empty file has an empty one, so a file's size alone
says how many segments it holds and the plaintext size (`plaintext_size`).
Why this design rather than one GCM over the whole file: docs/decisions.md.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
from pathlib import Path
from typing import IO
from collections.abc import AsyncIterator, Iterator

import anyio.to_thread
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from secure_link.encryption.aead import TAG_BYTES, DecryptionError

MAGIC = b"SLS1"
HEADER = struct.Struct(">4sI7s")   # magic, plaintext bytes per segment, nonce prefix
SEGMENT_BYTES = 64 * 1024          # Range reads decrypt at most one segment more on each side
MAX_SEGMENT_BYTES = 16 * 1024 * 1024
STREAM_BYTES = 256 * 1024          # plaintext handed over per thread hop when serving


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def plaintext_size(encrypted_size: int, segment_size: int = SEGMENT_BYTES) -> int:
    """The plaintext bytes a sealed file of `encrypted_size` bytes holds; DecryptionError if none could."""
    body = encrypted_size - HEADER.size
    sealed_segment = segment_size + TAG_BYTES
    segments = max(1, -(-body // sealed_segment))
    last = body - (segments - 1) * sealed_segment
    if last < TAG_BYTES or (last == TAG_BYTES and segments > 1):
        raise DecryptionError(f"{encrypted_size} bytes cannot be a sealed file: it was cut or altered")
    return body - segments * TAG_BYTES


class Writer:
    """Seals what is written into segments as they fill; `close()` seals the last one.

    A segment is sealed only once a byte beyond it has arrived, since whether
    it is the last one is part of its nonce.
    """

    def __init__(self, file: IO[bytes], key: bytes, aad: bytes, segment_size: int = SEGMENT_BYTES) -> None:
        self.file = file
        self.segment_size = segment_size
        self._aead = AESGCM(key)
        self._prefix = os.urandom(7)
        self._header = HEADER.pack(MAGIC, segment_size, self._prefix)
        self._aad = aad + self._header
        self._pending = bytearray()
        self._index = 0
        file.write(self._header)

    @classmethod
    def create(cls, path: Path, key: bytes, aad: bytes, segment_size: int = SEGMENT_BYTES) -> Writer:
        """A writer into a new file (never an existing one)."""
        return cls(open(path, "xb"), key, aad, segment_size)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Take more plaintext; every segment surely followed by more is sealed and written now."""
        self._pending += data
        full = (len(self._pending) - 1) // self.segment_size
        if full <= 0:
            return
        size = self.segment_size
        with memoryview(self._pending) as view:
            for n in range(full):
                self._seal(view[n * size:(n + 1) * size], last=False)
        del self._pending[:full * size]

    def close(self) -> None:
        """Seal the last segment (empty only for an empty file) and close the file."""
        self._seal(self._pending, last=True)
        self.file.close()

    def _seal(self, segment: bytes | bytearray | memoryview, last: bool) -> None:
        self.file.write(self._aead.encrypt(_nonce(self._prefix, self._index, last), bytes(segment), self._aad))
        self._index += 1


def write_file(path: Path, key: bytes, aad: bytes, data: bytes) -> None:
    """Seal `data` whole into a new file at `path`."""
    writer = Writer.create(path, key, aad)
    try:
        writer.write(data)
    finally:
        writer.close()


class AsyncWriter:
    """A `Writer` fed from the event loop: each write is one hop to a worker thread, where the
    plaintext's SHA-256 (the ETag) is also taken, so the loop never blocks on the disk or the cipher."""

    def __init__(self, path: Path, key: bytes, aad: bytes) -> None:
        self.path = path
        self.size = 0
        self._key, self._aad = key, aad
        self._digest = hashlib.sha256()
        self._writer: Writer | None = None

    @property
    def sha256(self) -> str:
        """The hex SHA-256 of the plaintext written so far."""
        return self._digest.hexdigest()

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = Writer.create(self.path, self._key, self._aad)

    def _write(self, data: bytearray) -> None:
        assert self._writer is not None
        self._digest.update(data)
        self._writer.write(data)
        self.size += len(data)

    async def open(self) -> None:
        """Create the file (and its folders); it holds only the header until data arrives."""
        await anyio.to_thread.run_sync(self._open)

    async def write(self, buffer: bytearray) -> None:
        """Seal what was buffered, then empty the buffer for reuse."""
        if buffer:
            await anyio.to_thread.run_sync(self._write, buffer)
            buffer.clear()

    async def close(self) -> None:
        """Seal the last segment and close the file."""
        assert self._writer is not None
        await anyio.to_thread.run_sync(self._writer.close)

    def discard(self) -> None:
        """Close and remove the file: nothing partial is left behind."""
        if self._writer is not None:
            self._writer.file.close()
        self.path.unlink(missing_ok=True)


class Reader(io.RawIOBase):
    """A sealed file read as its plaintext: seekable, decrypting only the segments a read touches.

    Pillow and the type sniffer read it as any binary file (wrapped in
    `io.BufferedReader`); serving asks for byte ranges with `chunks`.
    """

    def __init__(self, file: IO[bytes], key: bytes, aad: bytes) -> None:
        super().__init__()
        self.file = file
        header = file.read(HEADER.size)
        if len(header) < HEADER.size:
            raise DecryptionError("not a sealed file (it is shorter than a header)")
        magic, self.segment_size, self._prefix = HEADER.unpack(header)
        if magic != MAGIC or not 0 < self.segment_size <= MAX_SEGMENT_BYTES:
            raise DecryptionError("not a sealed file (its header is altered)")
        self.size = plaintext_size(os.fstat(file.fileno()).st_size, self.segment_size)
        self._aead = AESGCM(key)
        self._aad = aad + header
        self._last_index = max(0, -(-self.size // self.segment_size) - 1)
        self._cached: tuple[int, bytes] = (-1, b"")
        self._position = 0

    @classmethod
    def open(cls, path: Path, key: bytes, aad: bytes) -> Reader:
        """A reader over the file at `path`."""
        file = open(path, "rb")  # noqa: SIM115 - the reader owns it, and closes it in `close`
        try:
            return cls(file, key, aad)
        except BaseException:
            file.close()
            raise

    def segment(self, index: int) -> bytes:
        """The plaintext of segment `index` (the last one decrypted is kept for the next read)."""
        if self._cached[0] == index:
            return self._cached[1]
        sealed_size = self.segment_size + TAG_BYTES
        self.file.seek(HEADER.size + index * sealed_size)
        sealed = self.file.read(sealed_size)
        try:
            plain = self._aead.decrypt(_nonce(self._prefix, index, index == self._last_index), sealed, self._aad)
        except InvalidTag:
            raise DecryptionError(f"segment {index} does not authenticate: wrong key or context, "
                                  "or the file was altered, cut or reordered") from None
        self._cached = (index, plain)
        return plain

    def chunks(self, start: int, end: int) -> Iterator[bytes]:
        """The plaintext bytes [start, end), one piece per segment, reading only those segments."""
        position = start
        while position < end:
            index, offset = divmod(position, self.segment_size)
            piece = self.segment(index)[offset:offset + end - position]
            if not piece:
                raise DecryptionError("the file ends before the range does")
            yield piece
            position += len(piece)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        """io's primitive read: from the current position, at most one segment."""
        if self._position >= self.size:
            return 0
        index, offset = divmod(self._position, self.segment_size)
        piece = self.segment(index)[offset:offset + len(buffer)]
        buffer[:len(piece)] = piece
        self._position += len(piece)
        return len(piece)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def tell(self) -> int:
        return self._position

    def close(self) -> None:
        self.file.close()
        super().close()


async def stream(reader: Reader, start: int, end: int) -> AsyncIterator[bytes]:
    """Plaintext [start, end) for a response body, decrypted in a worker thread
    `STREAM_BYTES` at a time; the reader is closed however the stream ends."""
    pieces = reader.chunks(start, end)

    def batch() -> bytes:
        out = bytearray()
        for piece in pieces:
            out += piece
            if len(out) >= STREAM_BYTES:
                break
        return bytes(out)

    try:
        while chunk := await anyio.to_thread.run_sync(batch):
            yield chunk
    finally:
        reader.close()
