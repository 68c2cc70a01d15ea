"""Named SQL queries over an asyncpg pool: `await db.fetchrow("find_user_by_id", user_id)`.

Queries live in `queries/*.sql` as `-- name: verb_noun` blocks with asyncpg's
`$1` parameters. They are loaded once; a malformed file fails at start-up with
`file:line`, not on the first request that needs it (the aiosql convention).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeAlias, TypeVar
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg

from secure_link.errors import DatabaseUnavailable

QUERIES_DIR = Path(__file__).resolve().parent / "queries"
log = logging.getLogger("secure_link.db")
T = TypeVar("T")
# What a database that is down, restarting or unreachable raises through asyncpg:
CONNECTION_ERRORS = (
    OSError,                                        # refused, reset, no socket file, timed out
    asyncpg.PostgresConnectionError,                # the connection broke (SQLSTATE class 08)
    asyncpg.exceptions.OperatorInterventionError,   # shutting down, starting up (class 57)
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections, disk full (class 53)
    asyncpg.InterfaceError,                         # only "connection is closed", "pool is closing"
    asyncpg.exceptions.InternalClientError,         # the driver's state after a connection broke mid-query
)
CONNECT_TIMEOUT_S = 5.0    # a database that does not answer is unavailable, not a hang (detail 14)
COMMAND_TIMEOUT_S = 30.0   # generous: a send may wait on a logout's clearing lock
ACQUIRE_TIMEOUT_S = 10.0
# A connection queries run on: one of a transaction (a pool's proxy), or one opened alone.
Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record] | asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"


def is_connection_failure(exc: BaseException) -> bool:
    """Whether the driver failed to reach the database, rather than our code misusing it.

    asyncpg's InterfaceError also names our own mistakes (a wrong argument
    count, one connection used twice at once): those stay bugs, answered 500.
    """
    if isinstance(exc, asyncpg.InterfaceError):
        return "clos" in str(exc)
    return isinstance(exc, CONNECTION_ERRORS)


class Row(Protocol):
    """A row as the code reads it, by column name: an asyncpg Record, or a dict made from one."""

    def __getitem__(self, column: str, /) -> Any: ...


_NAME_LINE = re.compile(r"^--\s*name:\s*(?P<name>[a-z_][a-z0-9_]*)\s*$")


@dataclass(frozen=True)
class Query:
    """One named statement and where it was written, for error messages."""

    name: str
    sql: str
    origin: str


def load_queries(folder: Path = QUERIES_DIR) -> dict[str, Query]:
    """Read every `*.sql` file in `folder` into named queries."""
    queries: dict[str, Query] = {}
    for path in sorted(folder.glob("*.sql")):
        for query in _parse_file(path):
            if query.name in queries:
                raise ValueError(f"{query.origin}: duplicate query name {query.name!r} "
                                 f"(first at {queries[query.name].origin})")
            queries[query.name] = query
    return queries


def _parse_file(path: Path) -> list[Query]:
    found: list[Query] = []
    name, start, body = None, 0, []  # type: tuple[str | None, int, list[str]]
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines + ["-- name: __end__"], start=1):
        match = _NAME_LINE.match(line)
        if match is None:
            if name is not None and not line.lstrip().startswith("--"):
                body.append(line)
            continue
        if name is not None:
            sql = "\n".join(body).strip()
            if not sql:
                raise ValueError(f"{path.name}:{start}: query {name!r} is empty")
            found.append(Query(name, sql, f"{path.name}:{start}"))
        name, start, body = match["name"], number, []
    return found


async def _init_connection(connection: asyncpg.Connection) -> None:
    """Decode json/jsonb columns into Python values on every pooled connection."""
    for type_name in ("json", "jsonb"):
        await connection.set_type_codec(type_name, encoder=json.dumps, decoder=json.loads,
                                        schema="pg_catalog")


async def keep_session(connection: asyncpg.Connection) -> None:
    """Skip asyncpg's reset query on release: one round trip saved per pooled query.

    The default runs `pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`
    after every query. Pooled connections never hold session state here: locks
    are transaction-scoped, LISTEN lives on the fan-out's own connection, and no
    query SETs anything. asyncpg still rolls back an open transaction first.
    """


async def connect_or_refused(*args: Any, **kwargs: Any) -> asyncpg.Connection:
    """asyncpg.connect, where a database that does not accept connections is refused.

    PostgreSQL answers 55000 "database is not currently accepting connections"
    while an operator has turned them off (`ALTER DATABASE … ALLOW_CONNECTIONS
    false`, for maintenance or before a drop). At connect time that is the
    database being away, a 503 and a 1013 like a refused TCP connection; the same
    SQLSTATE from a query names our own mistake and stays a 500.
    """
    try:
        return await asyncpg.connect(*args, **kwargs)
    except asyncpg.exceptions.ObjectNotInPrerequisiteStateError as exc:
        raise ConnectionRefusedError(str(exc)) from exc


class Database:
    """A pool plus the named queries: `await db.fetchrow("find_user", name)`."""

    def __init__(self, pool: asyncpg.Pool, queries: dict[str, Query]) -> None:
        self.pool = pool
        self.queries = queries
        self.in_flight = 0  # queries and transactions under way, for the pool metrics

    @classmethod
    async def connect(cls, url: str, min_size: int = 2, max_size: int = 10) -> Database:
        """Open the pool; statements are prepared and cached per connection by asyncpg."""
        pool = await asyncpg.create_pool(url, min_size=min_size, max_size=max_size, connect=connect_or_refused,
                                         init=_init_connection, reset=keep_session,
                                         timeout=CONNECT_TIMEOUT_S, command_timeout=COMMAND_TIMEOUT_S)
        return cls(pool, load_queries())

    @classmethod
    async def run(cls, url: str, work: Callable[[Database], Awaitable[T]]) -> T:
        """`work(db)` on a small pool of its own, closed afterwards: a command's one errand."""
        db = await cls.connect(url, min_size=1, max_size=2)
        try:
            return await work(db)
        finally:
            await db.close()

    async def close(self) -> None:
        """Close the pool, waiting for queries in flight."""
        await self.pool.close()

    async def is_reachable(self, timeout: float = 2.0) -> bool:
        """Whether the database answers a trivial query in time (readiness probes)."""
        try:
            await self.pool.fetchval(self.sql("ping_database"), timeout=timeout)
        except Exception:  # any failure means "not ready"; the caller answers 503
            log.warning("database ping failed", exc_info=True)
            return False
        return True

    def sql(self, name: str) -> str:
        """The text of a named query (KeyError names a query that does not exist)."""
        return self.queries[name].sql

    async def fetch(self, name: str, *args: Any, conn: Conn | None = None) -> list[asyncpg.Record]:
        """All rows of a named query."""
        rows: list[asyncpg.Record] = await self._run("fetch", name, args, conn)
        return rows

    async def fetchrow(self, name: str, *args: Any, conn: Conn | None = None) -> asyncpg.Record | None:
        """The first row of a named query, or None."""
        row: asyncpg.Record | None = await self._run("fetchrow", name, args, conn)
        return row

    async def fetchval(self, name: str, *args: Any, conn: Conn | None = None) -> Any:
        """The first column of the first row, or None."""
        return await self._run("fetchval", name, args, conn)

    async def execute(self, name: str, *args: Any, conn: Conn | None = None) -> str:
        """Run a statement for its effect; returns the status tag (e.g. `DELETE 3`)."""
        status: str = await self._run("execute", name, args, conn)
        return status

    async def _run(self, method: str, name: str, args: tuple[Any, ...], conn: Conn | None) -> Any:
        """One named query; a broken or refused connection becomes `DatabaseUnavailable` (a 503).

        Queries on a transaction's connection are counted by the transaction.
        """
        counted = conn is None
        self.in_flight += counted
        try:
            return await getattr(conn or self.pool, method)(self.sql(name), *args)
        except CONNECTION_ERRORS as exc:
            if not is_connection_failure(exc):
                raise
            raise DatabaseUnavailable(repr(exc)) from exc
        finally:
            self.in_flight -= counted

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        """One connection inside one transaction, handed out explicitly.

        Pass it as `conn=` to every query that must be part of the transaction;
        nothing joins it implicitly (the trap `databases` falls into).
        """
        self.in_flight += 1
        in_body = False  # what the caller's own code raises passes unchanged
        try:
            async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as connection, connection.transaction():
                in_body = True
                yield connection
                in_body = False
        except CONNECTION_ERRORS as exc:
            if in_body or not is_connection_failure(exc):
                raise
            raise DatabaseUnavailable(repr(exc)) from exc
        finally:
            self.in_flight -= 1

    def pool_state(self) -> tuple[int, int, int]:
        """Connections open, idle, and queries under way: what the pool metrics show."""
        return self.pool.get_size(), self.pool.get_idle_size(), self.in_flight
