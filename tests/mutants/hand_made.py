"""Hand-made mutants, applied one at a time: each must make its named test fail.

mutmut does not reach the SQL, and some of the issue-15 gaps are easier to
state as one deliberate change than to hope a generator finds them. For each
mutant: check the original text is there exactly once, write the changed file,
run only the killing test, restore the file (always), and expect a failure.
First, every chosen killer must pass on the unchanged code (a killer that
already fails would "kill" anything).

    python tests/mutants/hand_made.py            # all of them
    python tests/mutants/hand_made.py sync-lock  # some, by name

The environment is passed to each killer: `ended-sessions-sockets-not-swept`
needs REDIS_URL (its killer is a Redis test), and the script stops rather than
count a skipped killer as a survivor or a kill.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class Edit:
    """In `path`, the text `old` (found exactly once) becomes `new`."""

    path: str
    old: str
    new: str


@dataclasses.dataclass(frozen=True)
class Mutant:
    """One deliberate bug, made of one or more edits; `killer` must then fail."""

    name: str
    killer: str
    edits: tuple[Edit, ...]
    needs: tuple[str, ...] = ()  # environment variables the killer needs, else it would be skipped


def mutant(name: str, path: str, old: str, new: str, killer: str, needs: tuple[str, ...] = ()) -> Mutant:
    """The usual case: one edit in one file."""
    return Mutant(name, killer, (Edit(path, old, new),), needs)


SQL = [
    mutant("sql-drop-advisory-locks", "secure_link/queries/messages.sql",
           "        SELECT pg_advisory_xact_lock(7001, user_id::int) FROM (",
           "        SELECT user_id FROM (",
           "tests/chat/test_sync.py::test_an_uncommitted_earlier_id_holds_back_later_ones"),
    mutant("sql-batch-claims-a-file-twice", "secure_link/chat/writer.py",
           "            if (len(batch) >= self._max_batch or pending.attachment in claimed\n",
           "            if (len(batch) >= self._max_batch\n",
           "tests/chat/test_group_commit.py::test_two_sends_of_one_file_in_a_batch_claim_it_once"),
    mutant("sql-seal-with-a-destroyed-key", "secure_link/queries/messages.sql",
           "     AND k.created_at = draft.key_born\n", "\n",
           "tests/chat/test_group_commit.py::test_a_worker_whose_cached_key_was_destroyed_elsewhere_seals_again"),
    mutant("batch-fails-with-its-worst-draft", "secure_link/chat/writer.py",
           "            if len(batch) == 1:\n                _fail(batch, exc)",
           "            if len(batch) >= 1:\n                _fail(batch, exc)",
           "tests/chat/test_group_commit.py::test_a_draft_the_database_refuses_fails_alone"),
    mutant("own-batch-echoed-back", "secure_link/fanout/core.py",
           "            if origin == self._origin:\n                return  # delivered here already",
           "            if False:\n                return  # delivered here already",
           "tests/fanout/test_fanout.py::test_a_batch_arrives_once_here_at_once_and_in_order_on_another_worker[postgres]"),
    mutant("close-drops-the-queue", "secure_link/chat/writer.py",
           "        while self._queue or self._inserts or not self._closing:",
           "        while self._inserts or not self._closing:",
           "tests/chat/test_group_commit.py::test_closing_the_writer_stores_what_is_queued_first"),
    Mutant("sql-widen-client-id-key", "tests/chat/test_chat.py::test_client_ids_are_per_sender", (
        Edit("sql/schema.sql", "CONSTRAINT messages_client_id_unique UNIQUE (sender_id, client_id)",
             "CONSTRAINT messages_client_id_unique UNIQUE (client_id)"),
        Edit("secure_link/queries/messages.sql", "ON CONFLICT (sender_id, client_id) DO NOTHING",
             "ON CONFLICT (client_id) DO NOTHING"))),
    mutant("sql-drop-sync-limit", "secure_link/queries/messages.sql",
           "ORDER BY id LIMIT $3;", "ORDER BY id;",
           "tests/chat/test_sync.py::test_the_replay_reads_in_bounded_batches"),
    mutant("sql-sync-without-user-filter", "secure_link/queries/messages.sql",
           "WHERE (sender_id = $1 OR recipient_id = $1) AND id > $2",
           "WHERE id > $2",
           "tests/chat/test_chat.py::test_carol_never_sees_alice_and_bobs_messages"),
    mutant("sql-revoke-any-users-session", "secure_link/queries/sessions.sql",
           "DELETE FROM sessions WHERE id = $1 AND user_id = $2",
           "DELETE FROM sessions WHERE id = $1",
           "tests/accounts/test_accounts.py::test_alice_lists_and_revokes_her_sessions"),
]
ISSUE_15 = [
    mutant("sync-replays-nothing", "secure_link/chat/messages.py",
           "    while True:\n        rows = await db.fetch(\"list_messages_since\"",
           "    while False:\n        rows = await db.fetch(\"list_messages_since\"",
           "tests/chat/test_sync.py::test_sync_never_skips_under_concurrent_senders"),
    mutant("sync-stops-after-one-batch", "secure_link/chat/messages.py",
           "        if len(rows) < SYNC_BATCH:\n            return\n", "        return\n",
           "tests/chat/test_sync.py::test_sync_goes_on_past_one_batch"),
    mutant("no-catch-up-after-a-gap", "secure_link/sockets.py",
           "        self.floor = await self._replay(self.floor)\n", "",
           "tests/fanout/test_outages.py::test_a_socket_that_never_syncs_still_gets_what_the_outage_dropped"),
    mutant("no-session-recheck-after-a-gap", "secure_link/sockets.py",
           "        if not await self.services.db.fetchval(\"session_is_live\", self.user.session_id):\n"
           "            raise Closing(CLOSE_UNAUTHENTICATED, \"session revoked\")\n", "",
           "tests/fanout/test_outages.py::test_a_session_revoked_during_the_outage_is_closed_when_it_ends"),
    mutant("history-uncapped", "secure_link/chat/frames.py",
           'numbers["after"], min(limit, 100)', 'numbers["after"], limit',
           "tests/chat/test_chat.py::test_history_pages_are_capped_at_100"),
    mutant("logout-clears-bystander-messages", "secure_link/queries/messages.sql",
           "    DELETE FROM messages WHERE sender_id = $1 OR recipient_id = $1\n",
           "    DELETE FROM messages WHERE sender_id = $1 OR recipient_id = $1\n"
           "       OR sender_id IN (SELECT recipient_id FROM messages WHERE sender_id = $1)\n"
           "       OR recipient_id IN (SELECT recipient_id FROM messages WHERE sender_id = $1)\n",
           "tests/chat/test_chat.py::test_logout_leaves_every_bystander_conversation_alone"),
    mutant("logout-clears-bystander-reads", "secure_link/queries/messages.sql",
           "DELETE FROM conversation_reads WHERE user_id = $1 OR peer_id = $1;",
           "DELETE FROM conversation_reads WHERE user_id = $1 OR peer_id = $1\n"
           "   OR user_id IN (SELECT peer_id FROM conversation_reads WHERE user_id = $1);",
           "tests/chat/test_chat.py::test_logout_leaves_every_bystander_conversation_alone"),
    mutant("rest-budget-shared-by-all", "secure_link/routes.py",
           "if wait := limiter.take(user.id):", "if wait := limiter.take(0):",
           "tests/http/test_limits.py::test_one_users_rest_budget_is_not_anothers"),
    mutant("login-throttle-ignores-username", "secure_link/queries/throttle.sql",
           "WHERE username = $1 AND address = $2 AND failed_at", "WHERE address = $2 AND failed_at",
           "tests/accounts/test_throttle.py::test_failures_against_one_name_do_not_lock_out_another"),
    mutant("success-forgives-nothing", "secure_link/queries/throttle.sql",
           "DELETE FROM login_failures WHERE username = $1 AND address = $2;",
           "DELETE FROM login_failures WHERE username = $1 AND address = $2 AND false;",
           "tests/accounts/test_throttle.py::test_a_successful_login_forgives_earlier_failures"),
    mutant("address-limit-times-11", "secure_link/queries/throttle.sql",
           "OFFSET $3 * 10 - 1", "OFFSET $3 * 11 - 1",
           "tests/accounts/test_throttle.py::test_one_address_may_fail_ten_times_the_limit_across_names"),
    mutant("logout-sets-a-long-lived-cookie", "secure_link/routes.py",
           'response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")',
           'response.set_cookie(SESSION_COOKIE, "stale", max_age=86400, path="/", httponly=True, samesite="lax")',
           "tests/accounts/test_accounts.py::test_logout_ignores_any_body_and_needs_a_session"),
    mutant("openapi-describes-a-stale-path", "secure_link/http/openapi.py",
           '    "/api/logout/": {"post": _op(',
           '    "/api/logoff/": {"post": _op("The old name", {200: _answer("Cleared", "Logged out")}, _CHANGE)},\n'
           '    "/api/logout/": {"post": _op(',
           "tests/http/test_http.py::test_openapi_describes_every_route"),
    mutant("cli-without-media", "secure_link/cli.py",
           '@main.group("media")', '@main.group("files")',
           "tests/ops/test_cli.py::test_help_lists_every_command"),
    mutant("presence-counted-per-worker", "secure_link/queries/presence.sql",
           "    DELETE FROM live_connections WHERE id = $1 RETURNING id\n)\n"
           "SELECT count(*) - (SELECT count(*) FROM deleted) FROM live_connections WHERE user_id = $2;",
           "    DELETE FROM live_connections WHERE id = $1 RETURNING id, worker_id\n)\n"
           "SELECT count(*) - (SELECT count(*) FROM deleted) FROM live_connections WHERE user_id = $2\n"
           "   AND worker_id IN (SELECT worker_id FROM deleted);",
           "tests/accounts/test_presence.py::test_two_tabs_on_two_workers_count_as_one_user"),
    mutant("dead-workers-users-not-announced", "secure_link/accounts/presence.py",
           "                    await announce_presence(db, fanout, user[\"id\"], user[\"username\"], online=False, conn=conn)\n",
           "                    pass\n",
           "tests/accounts/test_presence.py::test_a_dead_workers_users_are_announced_offline"),
    mutant("conversations-oldest-first", "secure_link/queries/messages.sql",
           "ORDER BY last.last_id DESC;", "ORDER BY last.last_id;",
           "tests/chat/test_chat.py::test_conversations_are_listed_newest_first"),
    mutant("readyz-always-ready", "secure_link/routes.py",
           "if not await services.db.is_reachable():", "if False:",
           "tests/http/test_http.py::test_readyz_answers_503_while_the_database_is_away"),
    mutant("secure-ignores-trusted-proxy", "secure_link/http/proxy.py",
           'if forwarded in ("http", "https") and _trusted(peer, settings):', "if False:",
           "tests/http/test_http.py::test_cookies_are_secure_behind_a_trusted_https_proxy"),
    mutant("secure-ignores-public-url", "secure_link/http/proxy.py",
           '    if settings.public_url:\n        return settings.public_url.startswith("https://")\n', "",
           "tests/http/test_http.py::test_cookies_are_secure_when_the_public_url_is_https"),
    mutant("socket-ignores-cors-origins", "secure_link/http/proxy.py",
           "return origin in settings.cors_origins or ", "return ",
           "tests/http/test_http.py::test_the_socket_accepts_origins_in_cors_origins"),
    mutant("bug-answers-200", "secure_link/app.py",
           'error_body("internal", "Something went wrong on our side."), 500)',
           'error_body("internal", "Something went wrong on our side."), 200)',
           "tests/http/test_http.py::test_a_bug_answers_500_and_closes_sockets_with_1011"),
    mutant("bug-closes-socket-normally", "secure_link/sockets.py",
           'return CLOSE_INTERNAL, "internal error"', 'return 1000, "internal error"',
           "tests/http/test_http.py::test_a_bug_answers_500_and_closes_sockets_with_1011"),
    mutant("session-list-without-user-agent", "secure_link/accounts/sessions.py",
           '"user_agent": row["user_agent"],', '"user_agent": None,',
           "tests/http/test_http.py::test_the_session_list_says_which_device_and_from_where"),
    mutant("session-list-without-address", "secure_link/accounts/sessions.py",
           '"address": row["address"],', '"address": "",',
           "tests/http/test_http.py::test_the_session_list_says_which_device_and_from_where"),
]
SECURITY_AND_FAULTS = [
    mutant("login-reservations-unlocked", "secure_link/accounts/throttle.py",
           '        await db.execute("lock_login_address", address, conn=conn)\n', "",
           "tests/accounts/test_throttle.py::test_a_concurrent_burst_of_wrong_phrases_hashes_at_most_the_limit"),
    mutant("hashing-line-never-full", "secure_link/ratelimit.py",
           "        if self._inside >= self._capacity:\n", "        if False:\n",
           "tests/accounts/test_throttle.py::test_a_full_hashing_line_turns_logins_away_at_once_and_they_do_not_count"),
    mutant("logout-keeps-parked-payloads", "secure_link/chat/clearing.py",
           "    await _forget_parked(services.fanout, user)\n", "    pass\n",
           "tests/stories/test_security.py::test_after_a_logout_no_live_row_holds_anything_that_was_said"),
    mutant("parked-payloads-never-expire", "secure_link/housekeeping.py",
           '        ("parked fan-out payloads", lambda: fanout.prune(SPILL_TTL_S)),\n', "",
           "tests/stories/test_security.py::test_parked_fan_out_payloads_expire_within_seconds"),
    mutant("upload-quota-unlocked", "secure_link/files/uploads.py",
           '            await services.db.execute("lock_user_uploads", user_id, conn=conn)\n', "            pass\n",
           "tests/files/test_quotas.py::test_concurrent_uploads_cannot_overshoot_the_quota"),
    mutant("image-decodes-not-one-per-user", "secure_link/files/uploads.py",
           "    async with services.image_locks.hold(user_id), services.image_slots:\n",
           "    async with services.image_slots:\n",
           "tests/files/test_quotas.py::test_image_decodes_are_one_per_user_and_bound_a_workers_memory"),
    mutant("cookie-from-any-origin", "secure_link/accounts/sessions.py",
           "                and not origin_allowed(connection, settings):\n",
           "                and False:\n",
           "tests/stories/test_security.py::test_a_cookie_changes_nothing_from_another_sites_page"),
    mutant("ended-sessions-sockets-not-swept", "secure_link/housekeeping.py",
           "        (\"ended sessions' sockets\", lambda: close_ended_sessions(db, fanout, services.session_sockets)),\n", "",
           "tests/stories/test_security.py::test_a_revoked_sessions_socket_closes_even_when_the_publish_fails",
           needs=("REDIS_URL",)),
    mutant("no-resync-after-a-gap", "secure_link/sockets.py",
           "        await self._send(events.resync())\n", "",
           "tests/stories/test_faults.py::test_a_clearing_lost_in_a_fan_out_outage_arrives_as_resync"),
    mutant("socket-cap-ignored", "secure_link/accounts/presence.py",
           "        if 0 < cap <= before:\n", "        if False:\n",
           "tests/stories/test_faults.py::test_one_account_cannot_hold_more_sockets_than_the_cap"),
    mutant("disk-trouble-is-a-bug", "secure_link/errors.py",
           "    elif isinstance(exc, OSError) and exc.errno in _DISK_TROUBLE:\n", "    elif False:\n",
           "tests/stories/test_faults.py::test_a_full_or_read_only_media_disk_answers_503_and_leaves_nothing"),
]
# Found in the second session of issue 15: races and locks, each driven by a held lock.
RACES_AND_LOCKS = [
    mutant("sql-key-check-from-the-snapshot", "secure_link/queries/messages.sql",
           "    FOR KEY SHARE OF k\n", "",
           "tests/chat/test_group_commit.py::"
           "test_sends_waiting_while_their_conversation_is_cleared_are_sealed_again_in_their_places"),
    mutant("resealed-drafts-reversed", "secure_link/chat/writer.py",
           "        self._queue[:0] = requeued", "        self._queue[:0] = requeued[::-1]",
           "tests/chat/test_group_commit.py::"
           "test_sends_waiting_while_their_conversation_is_cleared_are_sealed_again_in_their_places"),
    mutant("sql-rotation-skips-busy-keys", "secure_link/queries/keys.sql",
           "FOR NO KEY UPDATE SKIP LOCKED;", "FOR UPDATE SKIP LOCKED;",
           "tests/encryption/test_encryption.py::test_a_rotation_rewraps_the_key_of_a_conversation_with_a_send_in_flight"),
    mutant("late-event-cancels-cleanup", "secure_link/sockets.py",
           "            self.reader = None  # served", "            pass  # served",
           "tests/http/test_hostile.py::test_a_message_arriving_while_a_closed_socket_is_cleaned_up_is_no_error"),
    mutant("schema-runs-at-every-start", "secure_link/schema.py",
           "        if not await _schema_recorded(connection, digest):",
           "        if True:",
           "tests/ops/test_schema.py::test_a_start_beside_busy_servers_waits_for_no_lock_on_their_tables"),
]
# Issue 26 (contract v1.2): the invariants of who may reach whom, each with its killer.
WHO_MAY_REACH_YOU = [
    mutant("sql-block-checked-from-the-snapshot", "secure_link/queries/messages.sql",
           "      AND NOT blocked_after(draft.sender_id, draft.recipient_id, (SELECT users FROM locked))",
           "      AND NOT EXISTS (SELECT 1 FROM blocks WHERE (blocker_id = draft.sender_id AND blocked_id = "
           "draft.recipient_id) OR (blocker_id = draft.recipient_id AND blocked_id = draft.sender_id))",
           "tests/accounts/test_blocks.py::test_a_block_that_commits_while_a_send_waits_for_its_locks_refuses_it"),
    mutant("block-made-without-the-send-locks", "secure_link/accounts/blocks.py",
           '        await db.execute("lock_pair_messages", user.id, peer["id"], conn=conn)  # sends in flight end first\n',
           "",
           "tests/accounts/test_blocks.py::test_a_block_that_commits_while_a_send_waits_for_its_locks_refuses_it"),
    mutant("invite-used-outside-the-registration", "secure_link/accounts/flows.py",
           '    invite = await _live_invite(services, values["invite"]) if mode == "invite" else None\n',
           '    invite = await _live_invite(services, values["invite"]) if mode == "invite" else None\n'
           '    if invite is not None:\n'
           '        await services.db.fetchval("use_invite", invite)\n'
           '        invite = None\n',
           "tests/accounts/test_registration_modes.py::test_a_refused_registration_spends_no_use"),
    mutant("other-sessions-not-revoked", "secure_link/accounts/flows.py",
           '        ended = await services.db.fetch("delete_other_sessions", user.id, user.session_id, conn=conn)',
           "        ended = []",
           "tests/accounts/test_leaving.py::test_a_new_phrase_ends_every_other_session_at_once_on_every_worker"),
    mutant("retired-name-not-checked", "secure_link/accounts/flows.py",
           '        if await services.db.fetchval("username_is_retired", retired_tag(_pepper(services), username), conn=conn):',
           "        if False:",
           "tests/accounts/test_leaving.py::test_leaving_erases_everything_of_the_account_and_retires_its_name"),
]
# Issue 28, part 3: a Message encoded once, JSON through orjson, a worker's own batch dropped on arrival.
ENCODED_ONCE = [
    mutant("ack-not-jsons-bytes", "secure_link/fanout/events.py",
           "'{\"type\":\"ack\",\"client_id\":' + dumps(client_id) + ',\"message\":'",
           "'{\"type\":\"ack\",\"client_id\":' + dumps(client_id) + ', \"message\":'",  # a space: not json's bytes
           "tests/test_wire.py::test_ack_and_chat_frames_are_the_bytes_json_wrote_and_read_as_the_contract_says"),
    mutant("big-ints-read-as-floats", "secure_link/wire.py",
           "    if isinstance(value, dict) and float in map(type, value.values()):",
           "    if False:",
           "tests/test_wire.py::test_loads_reads_what_json_read"),
    mutant("own-notify-queued", "secure_link/fanout/backends/postgres.py",
           "        if self._echo is not None and text.startswith(self._echo):",
           "        if False:",
           "tests/fanout/test_fanout.py::test_a_workers_own_batch_is_dropped_as_it_comes_back_never_queued_again[postgres]"),
    mutant("own-publish-decoded", "secure_link/fanout/backends/redis.py",
           "            if self._echo is not None and data.startswith(self._echo):",
           "            if False:",
           "tests/fanout/test_fanout.py::test_a_workers_own_batch_is_dropped_as_it_comes_back_never_queued_again[redis]",
           needs=("REDIS_URL",)),
]
# Issue 28: REST trusts a session validated within seconds; every end of one still reaches every worker.
SESSION_CACHE = [
    mutant("ended-sessions-not-published", "secure_link/accounts/sessions.py",
           "            await fanout.publish(SESSIONS_CHANNEL, message)", "            pass",
           "tests/accounts/test_session_cache.py::"
           "test_a_session_revoked_on_one_worker_is_refused_on_the_other_at_once"),
    mutant("session-cache-kept-after-a-gap", "secure_link/accounts/sessions.py",
           "            return\n        self.clear()\n        if item is None:",
           "            return\n        if item is None:\n            self.clear()",
           "tests/accounts/test_session_cache.py::test_a_fan_out_gap_drops_every_cached_session"),
    mutant("session-cache-never-ages", "secure_link/accounts/sessions.py",
           "        if self._clock() - entry.at >= self._max_age:", "        if False:",
           "tests/accounts/test_session_cache.py::test_a_cached_session_needs_no_query_until_its_max_age"),
    mutant("validation-kept-across-an-ending", "secure_link/accounts/sessions.py",
           "        if not self._hearing or epoch != self.epoch or self._size <= 0:",
           "        if not self._hearing or self._size <= 0:",
           "tests/accounts/test_session_cache.py::test_a_validation_that_began_before_an_ending_is_not_kept"),
]
# The bench's accounting (issue 28): what it reports as a cost must be counted, and each REST run must
# measure new messages, not retries of an earlier run's.
BENCH = [
    mutant("bench-rest-reuses-client-ids", "bench/__main__.py",
           'scenarios.rest_requests(kind, accounts, f"{self.tag}{key}{kind}{index}")',
           'scenarios.rest_requests(kind, accounts, f"{self.tag}{key}{kind}")',
           "tests/ops/test_bench_smoke.py::test_rest_runs_send_fresh_client_ids_and_weigh_their_costs"),
    mutant("bench-batches-cumulative", "bench/costs.py",
           "counts[_label(key[3:])] = int(cumulative - below)", "counts[_label(key[3:])] = int(cumulative)",
           "tests/ops/test_bench_smoke.py::test_closed_loop_accounts_for_every_message_and_every_commit"),
    mutant("bench-postgres-live-processes-only", "bench/costs.py",
           "total = times.user + times.system + times.children_user + times.children_system",
           "total = times.user + times.system",
           "tests/ops/test_bench_smoke.py::test_postgres_cpu_counts_a_backend_that_has_ended"),
]
# Issue 28: the pipelined writer's invariants (chat/writer.py), each with its killer.
PIPELINE = "tests/chat/test_writer_pipeline.py::"
BESIDE = PIPELINE + "test_a_batch_beside_a_stalled_one_commits_first_and_everyone_hears_in_id_order"
SLOW_ANNOUNCE = PIPELINE + "test_batches_committed_during_a_slow_announcement_are_announced_together_in_id_order"
WRITER_PIPELINE = [
    Mutant("pipeline-announces-as-the-insert-begins", BESIDE, (
        Edit("secure_link/chat/writer.py",
             "        try:\n            committed = await self._write(insert.batch)\n",
             "        early = _Committed()\n        self._committed.append(early)\n        self._ready.set()\n"
             "        try:\n            committed = await self._write(insert.batch)\n"
             "            early.messages, early.unstored = committed.messages, committed.unstored\n"),
        Edit("secure_link/chat/writer.py",
             "        self._committed.append(committed)  # before the insert leaves",
             "        pass  # before the insert leaves"))),
    Mutant("pipeline-acks-before-announce", SLOW_ANNOUNCE, (
        Edit("secure_link/chat/writer.py",
             "            await self._announce(messages)  # before the acks: an acknowledged message is on its way"
             " to its receivers\n", ""),
        Edit("secure_link/chat/writer.py",
             "            for pending in (pending for each in done for pending in each.unstored):\n",
             "            await self._announce(messages)\n"
             "            for pending in (pending for each in done for pending in each.unstored):\n"))),
    mutant("pipeline-announces-out-of-order", "secure_link/chat/writer.py",
           'key=lambda m: m[1]["id"])', 'key=lambda m: -m[1]["id"])', SLOW_ANNOUNCE),
    mutant("pipeline-drain-skips-in-flight", "secure_link/chat/writer.py",
           "        while self._queue or self._inserts or not self._closing:",
           "        while self._queue or not self._closing:",
           PIPELINE + "test_closing_stores_and_answers_the_batches_in_flight_and_the_queue"),
    mutant("pipeline-beside-a-batch-of-the-same-user", "secure_link/chat/writer.py",
           "\n                    or pending.sender in users or pending.to in users):", "):", BESIDE),
]
MUTANTS = (SQL + ISSUE_15 + SECURITY_AND_FAULTS + RACES_AND_LOCKS + WHO_MAY_REACH_YOU + ENCODED_ONCE
           + SESSION_CACHE + BENCH + WRITER_PIPELINE)


def run(mutant: Mutant) -> bool:
    """Apply, run the killer, restore; True when the killer failed (the mutant is killed)."""
    originals = {edit.path: (ROOT / edit.path).read_text() for edit in mutant.edits}
    changed = dict(originals)
    for edit in mutant.edits:
        if changed[edit.path].count(edit.old) != 1:
            raise SystemExit(f"{mutant.name}: the text to change is not in {edit.path} exactly once; update the mutant")
        changed[edit.path] = changed[edit.path].replace(edit.old, edit.new)
    try:
        for path, text in changed.items():
            (ROOT / path).write_text(text)
        result = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", mutant.killer],
                                cwd=ROOT, capture_output=True, text=True, check=False)
    finally:
        for path, text in originals.items():
            (ROOT / path).write_text(text)
    if result.returncode not in (0, 1):
        print(result.stdout[-2000:], result.stderr[-2000:])
        raise SystemExit(f"{mutant.name}: pytest could not run {mutant.killer} (exit {result.returncode})")
    summary = (result.stdout.strip().splitlines() or [""])[-1]
    if result.returncode == 0 and " passed" not in summary:
        print(result.stdout[-2000:])
        raise SystemExit(f"{mutant.name}: {mutant.killer} did not run (skipped?), so it proves nothing")
    if result.returncode == 1 and " failed" not in summary:
        print(result.stdout[-2000:])
        raise SystemExit(f"{mutant.name}: {mutant.killer} errored rather than failed; fix the setup first")
    return result.returncode == 1


def baseline(chosen: list[Mutant]) -> None:
    """Every killer must pass on the unchanged code, else its failure under a mutant proves nothing."""
    killers = sorted({mutant.killer for mutant in chosen})
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *killers],
                            cwd=ROOT, capture_output=True, text=True, check=False)
    summary = (result.stdout.strip().splitlines() or [""])[-1]
    if result.returncode != 0 or " passed" not in summary or "skipped" in summary:
        print(result.stdout[-4000:], result.stderr[-2000:])
        raise SystemExit("the killers do not all pass on the unchanged code; fix them first")
    print(f"baseline: the {len(killers)} killers pass on the unchanged code ({summary})", flush=True)


def main(names: list[str]) -> int:
    """Check the killers pass, then run the chosen mutants (all by default); exit 1 if any survived."""
    chosen = [m for m in MUTANTS if not names or m.name in names]
    for mutant in chosen:
        missing = [name for name in mutant.needs if not os.environ.get(name)]
        if missing:
            raise SystemExit(f"{mutant.name}: its killer needs {', '.join(missing)} (e.g. "
                             "REDIS_URL=redis://127.0.0.1:6379/0); set it, or name the other mutants")
    baseline(chosen)
    survivors = []
    for mutant in chosen:
        killed = run(mutant)
        print(f"{'killed  ' if killed else 'SURVIVED'} {mutant.name:45} by {mutant.killer}", flush=True)
        if not killed:
            survivors.append(mutant.name)
    print(f"{len(chosen) - len(survivors)}/{len(chosen)} hand-made mutants killed")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
