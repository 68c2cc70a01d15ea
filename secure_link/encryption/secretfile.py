"""Secrets kept in files: created once, private to the server's user, checked whenever read.

The master key of encryption at rest is kept in such a file too (keyring.py).
The pepper of the phrase pre-hash must be secret and must never change (every
stored hash depends on it). A constant in the source is neither, so the server
refuses to run on a real database without one (docs/security.md); on the
embedded database it creates a random one under `var/`, as `make run` needs no
configuration.

A secret file others could read, write or swap is refused, in one line, as
ssh refuses such a private key and PostgreSQL such a TLS key: better a server
that does not start than one that serves on a key that may have leaked
(docs/security.md, "Secret files").
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import stat
from pathlib import Path
from collections.abc import Iterator

from secure_link.config import ConfigError, Settings

PEPPER_FILE_NAME = "secret-pepper"
_MODE = 0o600
_PROC_FD = Path("/proc/self/fd")
_MAX_LINKS = 40  # the kernel's own limit on symbolic links followed in one lookup


def read_or_create(path: Path, nbytes: int = 32) -> str:
    """The secret in `path`; on first use, a new random one written with mode 0600."""
    if not path.exists():
        create(path, secrets.token_urlsafe(nbytes))
    return read(path)


def create(path: Path, secret: str) -> bool:
    """Write `secret` to a new file at `path` with mode 0600; False if one was there already.

    The file is written whole and fsynced before it has its name, then linked
    into place: the link fails if the file exists, so two workers starting
    together agree (the loser reads the winner's), and nobody ever reads a
    half-written secret. The folder is fsynced last, so the name survives a
    power cut: a rotation registers a new key's id only once this returns.
    """
    data = (secret + "\n").encode("utf-8")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        created = _create_unnamed(path, data)
        if created is None:
            created = _create_named(path, data)
        if created:
            sync_folder(path.parent)
    except OSError as exc:
        raise ConfigError(f"cannot create the secret file {path}: {exc.strerror or exc}") from None
    return created


def _create_unnamed(path: Path, data: bytes) -> bool | None:
    """Through a file that has no name until it is linked (Linux's O_TMPFILE): a process killed
    meanwhile, or a write that fails, leaves nothing, and nobody can put a file or a link in its
    way. None where the system or the file system has no such files."""
    flag = getattr(os, "O_TMPFILE", 0)
    if not flag or not _PROC_FD.is_dir():
        return None
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            descriptor = os.open(".", flag | os.O_WRONLY, _MODE, dir_fd=folder)
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                return None
            raise
        try:
            _write_whole(descriptor, data)
            # A directory descriptor makes os.link call linkat(AT_SYMLINK_FOLLOW), which follows
            # /proc/self/fd's link to the open file; plain link() would link the link.
            return _link(_PROC_FD / str(descriptor), path.name, dst_dir_fd=folder)
        finally:
            os.close(descriptor)
    finally:
        os.close(folder)


def _create_named(path: Path, data: bytes) -> bool:
    """Elsewhere: through a temporary file of a name nobody can guess, made by O_EXCL (so never a
    file or link someone put there), removed on every way out. A process killed between its
    creation and its removal leaves it, mode 0600, beside `path`."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, _MODE)
    try:
        try:
            _write_whole(descriptor, data)
        finally:
            os.close(descriptor)
        return _link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _write_whole(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view):]
    os.fsync(descriptor)


def _link(source: Path, path: Path | str, dst_dir_fd: int | None = None) -> bool:
    try:
        os.link(source, path, dst_dir_fd=dst_dir_fd)
    except FileExistsError:
        return False
    return True


@contextlib.contextmanager
def locked_folder(folder: Path) -> Iterator[None]:
    """One process of this host at a time changes the secret files of `folder` (an flock on it)."""
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def replace(path: Path, secret: str) -> None:
    """`secret` in place of what `path` held, and the old bytes overwritten where they lay.

    The new file is made whole beside it (as `create` makes one), renamed over
    the old one (a reader sees one or the other, never half), then the old
    file's blocks, still open, are overwritten and fsynced: on a file system
    that writes in place (ext4, xfs) the old secret leaves the disk, not only
    the folder. Copy-on-write file systems and an SSD's own remapping may keep
    old blocks (docs/privacy.md). Hold `locked_folder` around it.
    """
    upcoming = path.with_name(path.name + ".new")
    upcoming.unlink(missing_ok=True)  # left by a process killed before its rename: made again
    create(upcoming, secret)
    old = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
    try:
        size = os.fstat(old).st_size
        os.replace(upcoming, path)
        sync_folder(path.parent)
        os.pwrite(old, b"\0" * size, 0)
        os.fsync(old)
    finally:
        os.close(old)


def sync_folder(folder: Path) -> None:
    """Make a name just made or renamed in `folder` durable before anything relies on it."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def read(path: Path) -> str:
    """A secret file's content without surrounding whitespace; refused if missing, empty or not private."""
    value = read_if_present(path)
    if value is None:
        raise ConfigError(f"cannot read the secret file {path}: {os.strerror(errno.ENOENT)}")
    return value


def read_if_present(path: Path) -> str | None:
    """As `read`, but None if there is no file at `path` (a rotation may have just renamed it away)."""
    try:
        _check_links(path)
        # O_NONBLOCK: a FIFO put in the key's place is refused below, not waited on.
        descriptor = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read the secret file {path}: {exc.strerror}") from None
    try:
        check_private(path, os.fstat(descriptor), os.geteuid())  # the file opened, wherever links led
    except ConfigError:
        os.close(descriptor)
        raise
    with os.fdopen(descriptor, "rb") as file:
        try:
            value = file.read().decode("utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the secret file {path}: {exc}") from None
    if not value:
        raise ConfigError(f"the secret file {path} is empty")
    return value


def _check_links(path: Path) -> None:
    """Every symbolic link on the way from `path` to the file is the running user's or root's:
    a link someone else made could point the server at a key of their choosing."""
    uid = os.geteuid()
    for _ in range(_MAX_LINKS):  # past that, open() fails with "too many levels of symbolic links"
        status = os.lstat(path)
        if not stat.S_ISLNK(status.st_mode):
            return
        if status.st_uid not in (uid, 0):
            raise ConfigError(f"the secret file {path} is a symbolic link made by user {status.st_uid}, neither "
                              f"the user the server runs as ({uid}) nor root: replace it by the file itself")
        path = path.parent / os.readlink(path)


def check_private(path: Path, status: os.stat_result, uid: int) -> None:
    """Refuse a secret file others could read or replace (`uid`: the user the server runs as).

    PostgreSQL's rule for its TLS key: a regular file, owned by the server's
    user with no access for group or others (0600, 0400), or owned by root with
    at most read access for its group (0640: a secret an administrator installs
    for a service's group). Anything else is refused with the command that fixes it.
    """
    if not stat.S_ISREG(status.st_mode):
        raise ConfigError(f"the secret file {path} is not a regular file")
    if status.st_uid not in (uid, 0):
        raise ConfigError(f"the secret file {path} belongs to user {status.st_uid}, neither the user the server "
                          f"runs as ({uid}) nor root, who could read or change it: `chown {uid} {path}`")
    loose = status.st_mode & (0o077 if status.st_uid == uid else 0o037)
    if loose:
        who = "others" if loose & 0o007 else "its group"
        raise ConfigError(f"the secret file {path} is open to {who} (mode {stat.S_IMODE(status.st_mode):04o}): "
                          f"`chmod 600 {path}`, and if anyone else could read it, treat the secret as leaked")


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
