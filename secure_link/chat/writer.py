"""Group commit, pipelined: one writer per worker stores every send in batches, one commit each.

Sends (socket and REST alike) queue their validated draft and wait; the writer
takes everything queued, stores it with one statement (one round trip, one
commit) and answers each sender with its own row or its own refusal. Every ack
still follows the durable commit of its own message: the commit is shared, not
skipped. There is no timer: a lone send goes at once, and under load the
queue fills while the previous commit is in flight, so batches grow by
themselves (docs/performance.md, "Group commit").

Two stages, so neither the database nor the event loop waits for the other:
*committing* (`_run` starts a batch's insert) and *announcing* (`_announcing`
publishes committed batches, then answers their senders). As soon as batch N's
insert returns, batch N+1's starts, while N is announced and acknowledged.
Normally one insert is in flight. When it has run longer than STALL_S (a
logout or a block holds one of its users' lock 7001), another batch may start
on another pool connection, up to MAX_IN_FLIGHT, so one busy pair does not
hold up every other sender of the worker (docs/decisions.md).

Why announcements stay in id order for each user: batches in flight at once
never share a user (nor a file): a draft whose sender or recipient is in an
insert in flight waits in the queue, and so does every later draft of its
users (`_next_batch`). So a user's batches are committed one after the other,
each starting after the previous one's insert returned, and within one user's
batches `insert_messages`' advisory locks draw ids in commit order. The
announcing stage takes committed batches in the order their inserts returned
and publishes each round merged in id order: a user's ids come out ascending.
A batch is never held for another: a batch that started later but shares no
user with a stalled one is announced and acknowledged as soon as it commits.

Two drafts in flight may not claim the same attachment: both would find it
unclaimed in their statements' snapshots, so the second waits for the first's
commit (across batches the user rule already sees to it: only its owner may
send a file). Two drafts with one sender and `client_id` may share a batch: the
insert's ON CONFLICT sees rows inserted earlier by the same statement, so the
later one gets the original.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from secure_link.db import Database
from secure_link.encryption import BodyKeys, contexts, pair_of
from secure_link.errors import DatabaseUnavailable, conversation_cleared
from secure_link.fanout import ConversationKey
from secure_link.wire import JsonObject

MAX_BATCH = 256
CLIENT_ID_MEMORY_DAYS = 30  # a retry after its message is gone is answered `gone` this long (docs/api.md)
MAX_RESEALS = 3  # a key destroyed under a draft again and again (logouts in a loop): answer 409
USER_CACHE_LIMIT = 100_000  # usernames never change; past this the cache starts again from empty
# An insert that has not returned after this long is taken to wait for a lock (a logout's, a block's:
# lock 7001): the next batch may start beside it. A full batch of 256 commits in ~3 ms on a quiet
# machine and 27-52 ms on this one with three other test runs on its two cores (commit_256 in
# `bench --quick`), so a merely busy insert seldom counts as stalled, and a held lock costs the
# worker's other senders 50 ms instead of the whole logout (docs/decisions.md).
STALL_S = 0.05
# Inserts in flight at most: one, plus two beside stalled ones. Each holds one of the pool's 10
# connections while it waits, so two locks held at once (a logout and a block) leave the others
# for REST, sockets and housekeeping.
MAX_IN_FLIGHT = 3
log = logging.getLogger("secure_link.writer")


@dataclasses.dataclass(eq=False)
class Pending:
    """One queued send: who sends what to whom, and the future its sender awaits."""

    sender_id: int
    sender: str
    to: str
    body: str
    client_id: str | None
    attachment: str | None
    origin: str  # the sending connection, which gets an ack instead of the chat event
    answer: asyncio.Future[JsonObject | None]
    recipient_id: int = 0  # resolved by the writer
    resealed: int = 0  # times its conversation's key changed under it (a logout meanwhile)
    conversation: ConversationKey | None = None  # the key its body was sealed with: its fan-out copy's too


# Builds the contract's Message from a stored draft and its row (messages.stored_message).
Shape = Callable[[Pending, asyncpg.Record], JsonObject]
# A stored draft, its row and its Message: after each commit, a batch of these in id order goes to
# `Announce` (messages.announce_messages).
StoredMessage = tuple[Pending, asyncpg.Record, JsonObject]
Announce = Callable[[list[StoredMessage]], Awaitable[None]]


@dataclasses.dataclass(eq=False)
class _Insert:
    """A batch between the start of its insert and its return: whom and what it holds."""

    batch: list[Pending]
    started: float
    users: set[str]  # usernames of its senders and recipients
    files: set[str]


@dataclasses.dataclass
class _Committed:
    """A batch's outcome, waiting to be announced: its stored drafts, and those stored not at all."""

    messages: list[StoredMessage] = dataclasses.field(default_factory=list)
    unstored: list[Pending] = dataclasses.field(default_factory=list)


def client_tag(key: bytes, sender_id: int, client_id: str) -> bytes:
    """What `used_client_ids` keeps of a sender's client_id: a keyed hash, which names neither."""
    return hmac.new(key, contexts.client_tag_input(sender_id, client_id), hashlib.sha256).digest()[:16]


def client_tag_key(pepper: str) -> bytes:
    """The key of `client_tag`, derived from the secret pepper (which never changes)."""
    return hmac.new(pepper.encode("utf-8"), contexts.CLIENT_TAGS, hashlib.sha256).digest()


class MessageWriter:
    """The worker's writer: the queue, the committing stage and the announcing stage.

    `store()` resolves to the stored Message, or to None when nothing was stored
    (an unknown recipient, a retried `client_id`, a refused attachment: the
    caller asks why, off the hot path). A database failure fails the sends of
    that batch only; one draft the database refuses is retried alone, so it
    never fails its neighbours.
    """

    def __init__(self, db: Database, bodies: BodyKeys, tag_key: bytes, shape: Shape, announce: Announce,
                 observe_batch: Callable[[int], None] = lambda size: None, max_batch: int = MAX_BATCH) -> None:
        self._db = db
        self._bodies = bodies
        self._tag_key = tag_key
        self._user_ids: dict[str, int] = {}
        self._shape = shape
        self._announce_batch = announce
        self._observe_batch = observe_batch
        self._max_batch = max_batch
        self._queue: list[Pending] = []
        self._inserts: list[_Insert] = []  # in flight, oldest first
        self._committed: list[_Committed] = []  # in the order their inserts returned
        self._wakeup = asyncio.Event()  # for the committing stage: a draft queued, an insert returned
        self._listening = True  # whether a new draft should wake the committing stage
        self._ready = asyncio.Event()  # for the announcing stage: a batch committed, or the end
        self._tasks: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._announcer: asyncio.Task[None] | None = None
        self._closing = False

    def tag(self, sender_id: int, client_id: str) -> bytes:
        """The keyed hash under which a sender's client_id is remembered (`used_client_ids`)."""
        return client_tag(self._tag_key, sender_id, client_id)

    @property
    def queued(self) -> int:
        """Sends waiting for a commit (the metrics sample it)."""
        return len(self._queue)

    def start(self) -> None:
        """Start both stages (once the event loop runs)."""
        self._task = asyncio.create_task(self._run(), name="message-writer")
        self._announcer = asyncio.create_task(self._announcing(), name="message-announcer")

    async def close(self) -> None:
        """Store and answer every queued send and every batch in flight, then stop: the drain's last step."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        self._ready.set()
        if self._announcer is not None:
            await self._announcer

    async def store(self, sender_id: int, sender: str, to: str, body: str, client_id: str | None,
                    attachment: str | None, origin: str = "") -> JsonObject | None:
        """Queue one draft and wait for the commit and announcement of the batch that holds it."""
        if self._closing or self._task is None or self._task.done():
            raise DatabaseUnavailable("the message writer is not running")
        pending = Pending(sender_id, sender, to, body, client_id, attachment, origin,
                          asyncio.get_running_loop().create_future())
        self._queue.append(pending)
        if self._listening:
            self._wakeup.set()
        return await pending.answer

    async def _run(self) -> None:
        """The committing stage: start inserts while they may start, else wait for a change."""
        while self._queue or self._inserts or not self._closing:
            self._wakeup.clear()
            stall_in = self._start_inserts()
            try:
                async with asyncio.timeout(stall_in):
                    await self._wakeup.wait()
            except TimeoutError:  # the newest insert in flight has stalled: look again
                pass

    def _start_inserts(self) -> float | None:
        """Start what may start; then say when to look again: in so many seconds, when the newest
        insert in flight counts as stalled, or (None) at the next wakeup. `_listening` says whether
        a new draft is such a wakeup: not while the queue waits for a stall or a free place anyway."""
        self._listening = False
        while self._queue:
            if len(self._inserts) >= MAX_IN_FLIGHT:
                return None
            stall_in = self._inserts[-1].started + STALL_S - asyncio.get_running_loop().time() if self._inserts else 0
            if stall_in > 0:
                return stall_in
            batch = self._next_batch()
            if not batch:  # every queued draft shares a user or a file with an insert in flight: look
                return STALL_S  # again later, not at every send (each look reads the whole queue)
            self._begin(batch)
        self._listening = True
        return None

    def _next_batch(self) -> list[Pending]:
        """Up to `max_batch` queued drafts, oldest first, none sharing a user or a file with an insert in
        flight; a draft left out keeps its users' and file's later drafts out too (their order stays)."""
        users = set().union(*(insert.users for insert in self._inserts))
        claimed = set().union(*(insert.files for insert in self._inserts))
        batch: list[Pending] = []
        later: list[Pending] = []
        for pending in self._queue:
            if (len(batch) >= self._max_batch or pending.attachment in claimed
                    or pending.sender in users or pending.to in users):
                later.append(pending)
                users.update((pending.sender, pending.to))
            else:
                batch.append(pending)
            if pending.attachment is not None:
                claimed.add(pending.attachment)
        self._queue = later
        return batch

    def _begin(self, batch: list[Pending]) -> None:
        users = {name for pending in batch for name in (pending.sender, pending.to)}
        files = {pending.attachment for pending in batch if pending.attachment is not None}
        insert = _Insert(batch, asyncio.get_running_loop().time(), users, files)
        self._inserts.append(insert)
        task = asyncio.create_task(self._commit(insert), name="message-insert")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _commit(self, insert: _Insert) -> None:
        """One batch's insert; its outcome goes to the announcing stage the moment it returns."""
        try:
            committed = await self._write(insert.batch)
        except Exception as exc:  # a bug must fail its batch, not stop every later send
            log.error("the writer failed on a batch of %d", len(insert.batch), exc_info=exc)
            _fail(insert.batch, exc)
            committed = _Committed()
        self._committed.append(committed)  # before the insert leaves: its users' next batch commits after it
        self._inserts.remove(insert)
        self._ready.set()
        self._wakeup.set()

    async def _write(self, batch: list[Pending]) -> _Committed:
        """Store one batch; a refused batch is retried draft by draft."""
        try:
            stored, requeued = await self._insert(batch)
        except DatabaseUnavailable as exc:
            _fail(batch, exc)
            return _Committed()
        except Exception as exc:  # noqa: BLE001 - the database refused the statement: find the one draft at fault
            if len(batch) == 1:
                _fail(batch, exc)
                return _Committed()
            log.warning("a batch of %d was refused (%r); storing its drafts one by one", len(batch), exc)
            committed = _Committed()
            for pending in batch:
                alone = await self._write([pending])
                committed.messages += alone.messages
                committed.unstored += alone.unstored
            return committed
        self._observe_batch(len(batch))
        messages = [(pending, row, self._shape(pending, row)) for pending, row in stored]
        answered = {id(pending) for pending, _ in stored} | {id(pending) for pending in requeued}
        return _Committed(messages, [p for p in batch if id(p) not in answered and not p.answer.done()])

    async def _announcing(self) -> None:
        """The announcing stage: publish what has committed, then answer its senders; until closed."""
        while self._committed or not (self._closing and self._task is not None and self._task.done()):
            if not self._committed:
                self._ready.clear()
                await self._ready.wait()
                continue
            done, self._committed = self._committed, []
            messages = sorted((message for each in done for message in each.messages), key=lambda m: m[1]["id"])
            await self._announce(messages)  # before the acks: an acknowledged message is on its way to its receivers
            for pending, _, message in messages:
                if not pending.answer.done():
                    pending.answer.set_result(message)
            for pending in (pending for each in done for pending in each.unstored):
                if not pending.answer.done():
                    pending.answer.set_result(None)

    async def _insert(self, batch: list[Pending]) -> tuple[list[tuple[Pending, asyncpg.Record]], list[Pending]]:
        """One statement, one commit: the stored drafts with their rows, in id order, and those queued again.

        Recipients are resolved and bodies sealed first; a draft to nobody (or
        to its sender) is left out and answered "not stored". A draft whose
        conversation key was destroyed after it was sealed goes back to the
        queue, to be sealed with the new key.
        """
        addressed = await self._addressed(batch)
        if not addressed:
            return [], []
        try:
            current = await self._bodies.for_pairs(pair_of(p.sender_id, p.recipient_id) for p in addressed)
        except asyncpg.ForeignKeyViolationError:  # a recipient deleted their account since it was cached
            self._user_ids.clear()
            addressed = await self._addressed(batch)  # resolved afresh: that name is nobody's now
            if not addressed:
                return [], []
            current = await self._bodies.for_pairs(pair_of(p.sender_id, p.recipient_id) for p in addressed)
        keys = [current[pair_of(p.sender_id, p.recipient_id)] for p in addressed]
        born = [generation for generation, _ in keys]
        sealed = [self._bodies.seal(key, p.sender_id, p.recipient_id, p.body) for p, (_, key) in zip(addressed, keys)]
        for pending, (generation, key) in zip(addressed, keys):
            pending.conversation = ConversationKey(*pair_of(pending.sender_id, pending.recipient_id), generation, key)
        rows = await self._db.fetch(
            "insert_messages",
            list(range(len(addressed))),
            [pending.sender_id for pending in addressed],
            [pending.recipient_id for pending in addressed],
            sealed,
            [pending.client_id for pending in addressed],
            [pending.attachment for pending in addressed],
            born,
            [None if p.client_id is None else self.tag(p.sender_id, p.client_id) for p in addressed])
        stored = sorted(((addressed[row["ord"]], row) for row in rows), key=lambda item: item[1]["id"])
        requeued = await self._reseal_if_rekeyed(addressed, born, {id(pending) for pending, _ in stored})
        return stored, requeued

    async def _addressed(self, batch: list[Pending]) -> list[Pending]:
        """The drafts to someone else, their recipients' ids resolved: cached (usernames never
        change), the batch's new names in one query."""
        unknown = sorted({pending.to for pending in batch} - self._user_ids.keys())
        if unknown:
            if len(self._user_ids) + len(unknown) > USER_CACHE_LIMIT:
                self._user_ids.clear()
            for row in await self._db.fetch("find_user_ids_by_usernames", unknown):
                self._user_ids[row["username"]] = row["id"]
        addressed = []
        for pending in batch:
            pending.recipient_id = self._user_ids.get(pending.to, 0)
            if pending.recipient_id and pending.recipient_id != pending.sender_id:
                addressed.append(pending)
        return addressed

    async def _reseal_if_rekeyed(self, addressed: list[Pending], born: list[datetime.datetime],
                                 stored: set[int]) -> list[Pending]:
        """Queue again, at the head, the drafts refused because their key changed meanwhile (a
        logout); one whose key changed under it too often is answered 409, to be sent again."""
        requeued = []
        for pending, generation in zip(addressed, born):
            if id(pending) in stored:
                continue
            pair = pair_of(pending.sender_id, pending.recipient_id)
            if await self._db.fetchval("find_conversation_key_born", *pair) != generation:
                self._bodies.forget(pair)
                if pending.resealed < MAX_RESEALS:
                    pending.resealed += 1
                    requeued.append(pending)
                elif not pending.answer.done():
                    pending.answer.set_exception(conversation_cleared())
        self._queue[:0] = requeued  # in the order they were sent, ahead of what queued meanwhile
        return requeued

    async def _announce(self, messages: list[StoredMessage]) -> None:
        """Hand committed messages on (fan-out); its failure is logged, never an unacked send."""
        if not messages:
            return
        try:
            await self._announce_batch(messages)
        except Exception:  # committed and acknowledged: receivers catch up from the database
            log.warning("announcing a batch of %d failed", len(messages), exc_info=True)


def _fail(batch: list[Pending], exc: BaseException) -> None:
    for pending in batch:
        if not pending.answer.done():
            pending.answer.set_exception(exc)
