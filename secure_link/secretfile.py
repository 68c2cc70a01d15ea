"""Secrets kept in files: created once, readable by the owner only, read at start.

The master key of encryption at rest is kept in such a file too (keyring.py).
The pepper of the phrase pre-hash must be secret and must never change (every
stored hash depends on it). A constant in the source is neither, so the server
refuses to run on a real database without one (docs/security.md); on the
embedded database it creates a random one under `var/`, as `make run` needs no
configuration.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from .config import ConfigError, Settings

PEPPER_FILE_NAME = "secret-pepper"


def read_or_create(path: Path, nbytes: int = 32) -> str:
    """The secret in `path`; on first use, a new random one written with mode 0600."""
    if not path.exists():
        create(path, secrets.token_urlsafe(nbytes))
    return read(path)


def create(path: Path, secret: str) -> bool:
    """Write `secret` to a new file at `path` with mode 0600; False if one was there already.

    Written whole to a private temporary file, then linked into place: the
    link fails if the file exists, so two workers starting together agree (the
    loser reads the winner's), and nobody ever reads a half-written secret.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(secret + "\n")
        file.flush()
        os.fsync(file.fileno())
    try:
        os.link(temporary, path)
    except FileExistsError:
        return False
    finally:
        temporary.unlink()
    return True


def read(path: Path) -> str:
    """A secret file's content without surrounding whitespace; empty is an error."""
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the secret file {path}: {exc.strerror}") from None
    if not value:
        raise ConfigError(f"the secret file {path} is empty")
    return value


def local_pepper_file(settings: Settings) -> Path:
    """The embedded database's pepper file under the var folder, created if absent."""
    path = settings.var_dir / PEPPER_FILE_NAME
    read_or_create(path)
    return path


def pepper(settings: Settings) -> str:
    """SECRET_PEPPER, else SECRET_PEPPER_FILE, else (embedded database only) var/secret-pepper."""
    if settings.pepper:
        return settings.pepper
    if settings.pepper_file:
        return read(settings.pepper_file)
    if settings.database_url is None:
        return read(local_pepper_file(settings))
    raise ConfigError(
        "SECRET_PEPPER (or SECRET_PEPPER_FILE) must be set when DATABASE_URL is: it keys every "
        "phrase hash, so it must be secret and must never change. Create one with: "
        "python -c 'import secrets; print(secrets.token_urlsafe(32))'")
