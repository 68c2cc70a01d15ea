-- name: insert_worker
-- Also the heartbeat: a worker swept while the database was away comes back.
INSERT INTO workers (id) VALUES ($1) ON CONFLICT (id) DO UPDATE SET heartbeat_at = now();

-- name: delete_worker
DELETE FROM workers WHERE id = $1;

-- name: delete_dead_workers
-- Workers silent for $1 seconds crashed: drop their connections and say
-- whose, so those users can be announced offline.
WITH dead AS (
    DELETE FROM workers WHERE heartbeat_at < now() - make_interval(secs => $1) RETURNING id
), gone AS (
    DELETE FROM live_connections WHERE worker_id IN (SELECT id FROM dead) RETURNING user_id
)
SELECT DISTINCT user_id FROM gone;

-- name: lock_user_presence
-- Taken first in its own statement: under READ COMMITTED the next statement's
-- snapshot then sees every connection change committed before the lock.
SELECT pg_advisory_xact_lock(7002, $1::int);

-- name: open_connection
-- Records the connection unless the user already holds $4 of them (0: no
-- cap); returns how many the user had before this one, on every worker.
WITH before AS (
    SELECT count(*) AS open FROM live_connections WHERE user_id = $3
), inserted AS (
    INSERT INTO live_connections (id, worker_id, user_id)
    SELECT $1, $2, $3 FROM before WHERE $4 = 0 OR before.open < $4
)
SELECT open FROM before;

-- name: close_connection
-- Returns how many connections the user still has after this one closed.
WITH deleted AS (
    DELETE FROM live_connections WHERE id = $1 RETURNING id
)
SELECT count(*) - (SELECT count(*) FROM deleted) FROM live_connections WHERE user_id = $2;

-- name: count_connections
SELECT count(*) FROM live_connections WHERE user_id = $1;

-- name: list_online_peers
SELECT DISTINCT u.username
FROM live_connections c JOIN users u ON u.id = c.user_id
WHERE c.user_id = ANY($1::bigint[]);

-- name: peer_is_online
-- Whether $2 is online as $1 may see it: only a conversation partner sees presence
-- (list_peer_ids' rule, which `presence` frames follow), so for a stranger it is false.
SELECT EXISTS (SELECT 1 FROM live_connections WHERE user_id = $2)
   AND EXISTS (SELECT 1 FROM messages
               WHERE LEAST(sender_id, recipient_id) = LEAST($1::bigint, $2::bigint)
                 AND GREATEST(sender_id, recipient_id) = GREATEST($1::bigint, $2::bigint))
   AND NOT EXISTS (SELECT 1 FROM blocks
                   WHERE (blocker_id = $1 AND blocked_id = $2) OR (blocker_id = $2 AND blocked_id = $1));
