"""Secret files (the master key, its `.next`, the pepper): made so nobody else can see or swap
them, even half-written, and refused when anybody else could read, write or replace them
(docs/security.md, "Secret files")."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from secure_link.encryption import secretfile
from secure_link.config import PROJECT_ROOT, ConfigError
from secure_link.encryption.keyring import encode_key, new_master_key, next_path

from ..conftest import free_port, missing_in_ci

SERVER_UID, SOMEONE_ELSE = 990, 991  # as a deploy's service user (docs/deploy.md), and another


def private_file(path: Path, owner: int | None = None, mode: int = 0o600) -> Path:
    """A secret file as `secretfile.create` makes it, then given `owner` and `mode`."""
    secretfile.create(path, encode_key(new_master_key()))
    if owner is not None:
        os.chown(path, owner, owner, follow_symlinks=False)
    path.chmod(mode)
    return path


@pytest.fixture
def as_root() -> None:
    """Files of other owners are made with chown, which only root may do."""
    if os.geteuid() != 0:
        missing_in_ci("making files owned by other users needs root")


# ---- creating one --------------------------------------------------------------------------

@pytest.mark.parametrize("planted", ["a link to a file of the planter's", "a file anyone can read"])
def test_a_file_put_where_the_temporary_file_would_go_gets_nothing(tmp_path: Path, planted: str) -> None:
    """The temporary file once had a name anyone could guess (the process id), opened without
    O_EXCL: a link put there received the secret, and a file put there became the key file, open to all."""
    path, elsewhere = tmp_path / "master-key", tmp_path / "elsewhere"
    guessed = tmp_path / f".master-key.{os.getpid()}"
    if planted.startswith("a link"):
        guessed.symlink_to(elsewhere)
    else:
        guessed.write_text("")
        guessed.chmod(0o666)
    assert secretfile.create(path, "the secret")
    assert not path.is_symlink() and stat.S_IMODE(path.stat().st_mode) == 0o600 and path.stat().st_nlink == 1
    assert secretfile.read(path) == "the secret"
    assert not elsewhere.exists() and (guessed.is_symlink() or guessed.read_text() == "")


@pytest.mark.parametrize("how, way", [("dies", "create"), ("fails", "create"), ("fails", "_create_named")])
def test_a_write_that_dies_or_fails_midway_leaves_no_file(tmp_path: Path, how: str, way: str) -> None:
    """A process past its file size limit (RLIMIT_FSIZE) is killed by SIGXFSZ at the write, or, with
    the signal ignored, its write fails (EFBIG): a real death, and a real failure, halfway into the
    secret. Neither leaves a file. `_create_named` is the way where the system has no O_TMPFILE;
    killed, it cannot clean up, so only its failure is tried."""
    script = (
        "import resource, signal, sys\n"
        "from pathlib import Path\n"
        "from secure_link.encryption import secretfile\n"
        "if sys.argv[2] == 'dies':\n"
        "    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)\n"
        "resource.setrlimit(resource.RLIMIT_CORE, (0, 0))\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (8, 8))\n"
        "path = Path(sys.argv[1])\n"
        "try:\n"
        "    if sys.argv[3] == 'create':\n"
        "        secretfile.create(path, 'a secret longer than eight bytes')\n"
        "    else:\n"
        "        secretfile._create_named(path, b'a secret longer than eight bytes')\n"
        "except (OSError, secretfile.ConfigError) as exc:\n"
        "    sys.exit(f'refused: {exc}')\n")
    folder = tmp_path / "keys"
    folder.mkdir()
    done = subprocess.run([sys.executable, "-c", script, str(folder / "master-key"), how, way], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    if how == "dies":
        assert done.returncode == -25, done  # SIGXFSZ
    else:
        assert done.returncode == 1 and "File too large" in done.stderr, done
    assert list(folder.iterdir()) == []


# ---- reading one ---------------------------------------------------------------------------

RULES = [  # owner, mode, refused because (None: accepted), for a server running as SERVER_UID
    (SERVER_UID, 0o600, None),
    (SERVER_UID, 0o400, None),
    (SERVER_UID, 0o640, "open to its group"),
    (SERVER_UID, 0o620, "open to its group"),
    (SERVER_UID, 0o604, "open to others"),
    (SERVER_UID, 0o602, "open to others"),
    (0, 0o640, None),  # root's, readable by the service's group: PostgreSQL accepts its TLS key so
    (0, 0o660, "open to its group"),
    (0, 0o644, "open to others"),
    (SOMEONE_ELSE, 0o600, f"belongs to user {SOMEONE_ELSE}"),
]


@pytest.mark.parametrize("owner, mode, refusal", RULES, ids=[f"owner {o} mode {m:04o}" for o, m, _ in RULES])
def test_a_secret_file_is_refused_when_anyone_else_could_read_or_replace_it(
        tmp_path: Path, as_root: None, owner: int, mode: int, refusal: str | None) -> None:
    path = private_file(tmp_path / "master-key", owner, mode)
    if refusal is None:
        secretfile.check_private(path, path.stat(), SERVER_UID)
    else:
        with pytest.raises(ConfigError, match=refusal):
            secretfile.check_private(path, path.stat(), SERVER_UID)


def test_a_secret_file_open_to_others_is_refused_when_read(tmp_path: Path) -> None:
    """What `check_private` decides is what `read` does, for the user the test runs as."""
    path = private_file(tmp_path / "secret-pepper")
    assert secretfile.read(path)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match=r"is open to others \(mode 0644\): `chmod 600 "):
        secretfile.read(path)


def link_by(owner: int, link: Path, target: Path | str) -> Path:
    link.symlink_to(target)
    os.chown(link, owner, owner, follow_symlinks=False)
    return link


@pytest.mark.parametrize("where, refusal", [
    ("mine, to my private file", None),
    ("mine, to a link of mine, to my private file", None),
    ("someone else's, to my private file", f"symbolic link made by user {SOMEONE_ELSE}"),
    ("mine, to someone else's link, to my private file", f"symbolic link made by user {SOMEONE_ELSE}"),
    ("mine, to someone else's file", f"belongs to user {SOMEONE_ELSE}"),
    ("mine, to a FIFO", "not a regular file"),
    ("mine, to a folder", "not a regular file"),
])
def test_a_secret_file_that_is_a_link_is_followed_only_to_what_would_be_accepted_itself(
        tmp_path: Path, as_root: None, where: str, refusal: str | None) -> None:
    """A link someone else could make or change might point the server at a key of their choosing;
    a FIFO would make it wait forever for a writer."""
    me = os.geteuid()
    mine = private_file(tmp_path / "my-key")
    theirs = private_file(tmp_path / "their-key", SOMEONE_ELSE)
    os.mkfifo(tmp_path / "fifo", 0o600)
    (tmp_path / "folder").mkdir(mode=0o700)
    path = tmp_path / "master-key"
    {
        "mine, to my private file": lambda: link_by(me, path, mine),
        "mine, to a link of mine, to my private file": lambda: link_by(me, path, link_by(me, tmp_path / "hop", mine)),
        "someone else's, to my private file": lambda: link_by(SOMEONE_ELSE, path, mine),
        "mine, to someone else's link, to my private file":
            lambda: link_by(me, path, link_by(SOMEONE_ELSE, tmp_path / "hop", mine)),
        "mine, to someone else's file": lambda: link_by(me, path, theirs),
        "mine, to a FIFO": lambda: link_by(me, path, tmp_path / "fifo"),
        "mine, to a folder": lambda: link_by(me, path, tmp_path / "folder"),
    }[where]()
    if refusal is None:
        assert secretfile.read(path) == secretfile.read(mine)
    else:
        with pytest.raises(ConfigError, match=refusal):
            secretfile.read(path)


# ---- the server, with each secret file open to others ----------------------------------------

@pytest.mark.parametrize("loose", ["MASTER_KEY_FILE", "MASTER_KEY_FILE.next", "SECRET_PEPPER_FILE"])
def test_serve_refuses_in_one_line_each_secret_file_others_can_read(database_url: str, tmp_path: Path,
                                                                    loose: str) -> None:
    key_file = private_file(tmp_path / "keys" / "master-key")
    pepper = tmp_path / "pepper"
    secretfile.create(pepper, "a pepper of our own")
    named = {"MASTER_KEY_FILE": key_file, "MASTER_KEY_FILE.next": next_path(key_file),
             "SECRET_PEPPER_FILE": pepper}[loose]
    if not named.exists():
        private_file(named)
    named.chmod(0o644)
    env = {**os.environ, "DATABASE_URL": database_url, "MASTER_KEY_FILE": str(key_file),
           "SECRET_PEPPER": "", "SECRET_PEPPER_FILE": str(pepper), "SECURE_LINK_LOG_LEVEL": "warning"}
    try:
        done = subprocess.run([sys.executable, "-m", "secure_link", "serve", "--port", str(free_port())],
                              env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:  # run() has killed it
        pytest.fail(f"serve started with {loose} open to others")
    assert done.returncode == 1, done
    assert done.stderr.strip().splitlines() == [(f"Error: the secret file {named} is open to others (mode 0644): "
                                                 f"`chmod 600 {named}`, and if anyone else could read it, "
                                                 "treat the secret as leaked")]
