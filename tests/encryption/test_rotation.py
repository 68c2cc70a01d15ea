"""`secure-link keys rotate` killed with SIGKILL at each of its steps (docs/privacy.md, "Rotating
the master key"): a server starts at every point, before and after a rerun; the rerun finishes;
every data key opens; and nothing but the key files is ever left in their folder.

The rotation is a real process, stopped at a chosen step without a line of test code in it: a
row trigger the test adds to its own database waits for an advisory lock the test holds, so the
statement the trigger fires in is under way, and the rotation waits in it (pg_blocking_pids).
The first step is stopped by the lock it really takes. Then the rotation is killed, and the
test lets go: PostgreSQL finishes the dead client's statement and commits it if it stood alone,
or rolls its transaction back, as for any client that dies. A stop marked `cut` ends the dead
client's sessions first, so that statement never runs (the database connection lost too).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
from pathlib import Path
from collections.abc import AsyncIterator

import asyncpg
import pytest

from secure_link.encryption import secretfile
from secure_link.config import PROJECT_ROOT, Settings
from secure_link.encryption.keyring import Keyring, encode_key, new_master_key, next_path, read_key

from ..conftest import run_cli, running_server, server_process, settings_for
from ..story import Person, upload
from ..encryption.test_encryption import assert_opens_nothing, stored_keys

PAUSE_LOCK = "pg_advisory_xact_lock(7999, 0)"  # the tests' own: no query of the app takes it
MASTER_KEY_LOCK = "pg_advisory_xact_lock(7005, 0)"  # queries/keys.sql, lock_master_keys


@dataclasses.dataclass(frozen=True)
class Stop:
    """Where a rotation is stopped: in a statement `event` (INSERT, UPDATE, DELETE) on `table`,
    or, with no table, waiting for the master key lock, as its first step does."""

    name: str
    event: str = ""
    table: str = ""
    cut: bool = False


STOPS = [
    Stop("before-anything"),
    Stop("new-key-on-disk-not-registered", "INSERT", "master_keys"),
    Stop("new-key-registered-nothing-rewrapped", "UPDATE", "conversation_keys"),
    Stop("conversation-keys-rewrapped-file-keys-not", "UPDATE", "files"),
    Stop("all-rewrapped-old-key-registered", "DELETE", "master_keys", cut=True),
    Stop("old-key-retired-file-not-replaced", "DELETE", "master_keys"),
]


@dataclasses.dataclass
class Deployment:
    """One database, its key file and media, and what Alice stored before any rotation."""

    database_url: str
    key_file: Path
    settings: Settings
    alice: Person
    bob: Person
    message: str
    note: dict

    @property
    def env(self) -> dict[str, str]:
        return {"DATABASE_URL": self.database_url, "MASTER_KEY_FILE": str(self.key_file),
                "MEDIA_ROOT": str(self.settings.media_root)}


@pytest.fixture
async def deployment(own_database: str, tmp_path: Path) -> Deployment:
    """Alice and Bob have talked and Alice has uploaded a note: a conversation key and file keys to rewrap."""
    key_file = tmp_path / "keys" / "master-key"
    settings = settings_for(own_database, tmp_path / "media", master_key_file=key_file)
    async with running_server(settings) as server:
        alice, bob = await server.person("alice").register(), await server.person("bob").register()
        message = "said before the rotation"
        sent = await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": message})
        assert sent.status_code == 201, sent.text
        note = await upload(alice, b"uploaded before the rotation\n", "note.txt")
    return Deployment(own_database, key_file, settings, alice, bob, message, note)


@pytest.fixture
async def watcher(deployment: Deployment) -> AsyncIterator[asyncpg.Connection]:
    """The test's connection to the deployment's database, where a trigger can pause a statement."""
    connection = await asyncpg.connect(deployment.database_url)
    await connection.execute(f"CREATE FUNCTION pause_for_the_test() RETURNS trigger LANGUAGE plpgsql AS "
                             f"$$ BEGIN PERFORM {PAUSE_LOCK}; RETURN COALESCE(NEW, OLD); END $$")
    yield connection
    await connection.close()


@pytest.mark.slow
async def test_a_rotation_killed_at_each_step_is_finished_by_a_rerun_and_a_server_starts_throughout(
        deployment: Deployment, watcher: asyncpg.Connection) -> None:
    first_key = read_key(deployment.key_file)
    for stop in STOPS:  # each on what the last rerun left: a new rotation every time
        rotated_from = Keyring.load(deployment.key_file).wrap_id
        async with paused_rotation(deployment, watcher, stop) as rotation:
            rotation.process.send_signal(signal.SIGKILL)
            assert await rotation.process.wait() == -signal.SIGKILL, stop.name
            if stop.cut:
                await watcher.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid",
                                      rotation.backends)
        await until_ended(watcher, rotation.backends)
        assert key_folder(deployment) <= {"master-key", "master-key.next"}, stop.name
        await assert_every_key_opens(deployment, watcher)
        await serves_what_was_stored(deployment, f"after a kill at {stop.name}")

        code, out, err = await run_cli("keys", "rotate", **deployment.env)
        assert code == 0, (stop.name, out, err)
        new_id = Keyring.load(deployment.key_file).wrap_id
        assert f"master key {new_id} now wraps every key" in out and new_id != rotated_from, stop.name
        assert key_folder(deployment) == {"master-key"}, stop.name
        assert [row["id"] for row in await watcher.fetch("SELECT id FROM master_keys")] == [new_id], stop.name
        assert {row["master_key_id"] for row in await watcher.fetch(
            "SELECT master_key_id FROM files UNION SELECT master_key_id FROM conversation_keys")} == {new_id}
        await assert_every_key_opens(deployment, watcher)
        await serves_what_was_stored(deployment, f"after the rerun from {stop.name}")
    assert_opens_nothing(Keyring([first_key]), await stored_keys(watcher), deployment.settings.media_root)


async def test_a_second_rotation_while_one_runs_is_refused_and_the_first_finishes(
        deployment: Deployment, watcher: asyncpg.Connection) -> None:
    """Were both to go on, each could make a key of its own and register one no file keeps."""
    async with paused_rotation(deployment, watcher, Stop("rewrapping", "UPDATE", "conversation_keys")) as first:
        upcoming = next_path(deployment.key_file).read_text()
        registered = await watcher.fetch("SELECT id FROM master_keys")
        code, out, err = await run_cli("keys", "rotate", **deployment.env)
        holder = await watcher.fetchval("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = 7005 "
                                        "AND objid = 1 AND granted")
        assert holder in first.backends
        assert code == 1 and f"another `secure-link keys rotate` is running on this database (PostgreSQL " \
                             f"session {holder})" in err, (out, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert next_path(deployment.key_file).read_text() == upcoming
        assert await watcher.fetch("SELECT id FROM master_keys") == registered
    out, err = await first.process.communicate()
    assert first.process.returncode == 0, (out, err)
    assert b"now wraps every key" in out and key_folder(deployment) == {"master-key"}
    await assert_every_key_opens(deployment, watcher)


@pytest.mark.parametrize("linked", ["master-key", "master-key.next"])
async def test_a_rotation_refuses_key_files_that_are_links(deployment: Deployment, watcher: asyncpg.Connection,
                                                           linked: str) -> None:
    """Its last step renames `.next` over MASTER_KEY_FILE: with a link at either name, a key would be
    left where the link points after the rotation said it was gone, or MASTER_KEY_FILE become a link."""
    if linked.endswith(".next"):
        secretfile.create(deployment.key_file.with_name("real"), encode_key(new_master_key()))
    else:
        deployment.key_file.rename(deployment.key_file.with_name("real"))
    deployment.key_file.with_name(linked).symlink_to("real")
    before = key_folder(deployment)
    code, out, err = await run_cli("keys", "rotate", **deployment.env)
    assert code == 1 and "is a symbolic link" in err and "Traceback" not in err, (out, err)
    assert key_folder(deployment) == before
    assert len(await watcher.fetch("SELECT id FROM master_keys")) == 1


def test_a_rotation_ending_while_a_server_reads_the_key_files_leaves_it_the_new_key(tmp_path: Path) -> None:
    """A server reads the key files again when a row names a key it lacks, while the rotation may be
    renaming `.next` over MASTER_KEY_FILE. Here the rename happens between its two reads, at the
    second file's opening (an audit hook, in a process of its own: hooks cannot be removed)."""
    key_file = tmp_path / "master-key"
    secretfile.create(key_file, encode_key(new_master_key()))
    secretfile.create(next_path(key_file), encode_key(new_master_key()))
    new_id = Keyring.load(key_file).wrap_id
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from secure_link.encryption.keyring import Keyring, next_path\n"
        "path = Path(sys.argv[1]); opened = []\n"
        "def finish_rotation(event, args):\n"
        "    if event == 'open' and isinstance(args[0], (str, os.PathLike)) and Path(args[0]).name.startswith(path.name):\n"
        "        opened.append(args[0])\n"
        "        if len(opened) == 2:\n"
        "            os.replace(next_path(path), path)\n"
        "sys.addaudithook(finish_rotation)\n"
        "print(Keyring.load(path).wrap_id)\n")
    done = subprocess.run([sys.executable, "-c", script, str(key_file)], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == new_id
    assert not next_path(key_file).exists()  # the rename did happen in between


@dataclasses.dataclass
class Paused:
    """A rotation process seen waiting at a stop, and its database sessions."""

    process: asyncio.subprocess.Process
    backends: list[int]


@contextlib.asynccontextmanager
async def paused_rotation(deployment: Deployment, watcher: asyncpg.Connection, stop: Stop) -> AsyncIterator[Paused]:
    """`keys rotate` started and seen waiting at `stop`; let go at the end (it goes on unless killed)."""
    if stop.table:
        await watcher.execute(f"CREATE TRIGGER pause BEFORE {stop.event} ON {stop.table} "
                              "FOR EACH ROW EXECUTE FUNCTION pause_for_the_test()")
    try:
        async with holding(deployment.database_url, PAUSE_LOCK if stop.table else MASTER_KEY_LOCK) as blocker:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "secure_link", "keys", "rotate", cwd=PROJECT_ROOT,
                env={**os.environ, **deployment.env}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            try:
                await wait_until_waiting(watcher, blocker, f"{stop.event} " if stop.table else MASTER_KEY_LOCK,
                                         process, stop.name)
                mine = [watcher.get_server_pid(), blocker.get_server_pid()]
                backends = [row["pid"] for row in await watcher.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND backend_type = 'client backend' AND pid <> ALL($1::int[])", mine)]
                yield Paused(process, backends)
            except BaseException:
                if process.returncode is None:
                    process.kill()
                await process.communicate()
                raise
    finally:
        if stop.table:
            await watcher.execute(f"DROP TRIGGER pause ON {stop.table}")


@contextlib.asynccontextmanager
async def holding(database_url: str, lock: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection holding advisory `lock` in an open transaction; let go at the end."""
    connection = await asyncpg.connect(database_url)
    try:
        async with connection.transaction():
            await connection.execute(f"SELECT {lock}")
            yield connection
    finally:
        await connection.close()


async def wait_until_waiting(watcher: asyncpg.Connection, blocker: asyncpg.Connection, waits_in: str,
                             process: asyncio.subprocess.Process, name: str) -> None:
    """Until some session waits for the lock `blocker` holds, in a statement containing `waits_in`."""
    for _ in range(600):
        queries = [row["query"] for row in await watcher.fetch(
            "SELECT query FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))", blocker.get_server_pid())]
        if queries:
            assert any(waits_in in query for query in queries), (name, waits_in, queries)
            return
        if process.returncode is not None:
            break
        await asyncio.sleep(0.05)
    if process.returncode is None:
        process.kill()
    out, err = await process.communicate()
    raise AssertionError(f"{name}: the rotation never waited in {waits_in!r} (exit {process.returncode}) {out!r} {err!r}")


async def until_ended(watcher: asyncpg.Connection, backends: list[int]) -> None:
    """Until PostgreSQL has ended the killed rotation's sessions (after finishing what they waited in)."""
    for _ in range(600):
        if not await watcher.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])", backends):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the killed rotation's sessions did not end")


def key_folder(deployment: Deployment) -> set[str]:
    """The names in MASTER_KEY_FILE's folder."""
    return {path.name for path in deployment.key_file.parent.iterdir()}


async def assert_every_key_opens(deployment: Deployment, watcher: asyncpg.Connection) -> None:
    """Every wrapped key in the database opens with the key files as they are now."""
    keyring = Keyring.load(deployment.key_file)
    wrapped = await stored_keys(watcher)
    assert wrapped
    for key, context in wrapped:
        keyring.unwrap(key, context)


async def serves_what_was_stored(deployment: Deployment, moment: str) -> None:
    """`secure-link serve` starts, gives Alice her message and note back, and stores a new upload."""
    async with server_process(deployment.database_url, "memory://", deployment.settings,
                              **deployment.env) as server:
        alice = deployment.alice.on(server)
        history = await alice.api("GET", "/api/messages/", params={"with": deployment.bob.username})
        assert history.status_code == 200, history.text
        assert deployment.message in history.text
        assert (await alice.api("GET", deployment.note["url"])).content == b"uploaded before the rotation\n"
        content = f"uploaded {moment}\n".encode()  # its key wrapped by whichever key the server wraps with now
        assert (await alice.api("GET", (await upload(alice, content, "later.txt"))["url"])).content == content
