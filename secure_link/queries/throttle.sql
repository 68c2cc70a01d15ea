-- Failed-login throttling, shared by every worker. A row of login_failures is
-- an attempt that has not succeeded: it is written before the phrase is
-- hashed, deleted again if the phrase was right, and kept as a failure otherwise.

-- name: lock_login_address
-- Attempts from one address are reserved one at a time, so each sees every
-- attempt before it; both limits include the address, so this one lock covers both.
SELECT pg_advisory_xact_lock(7004, hashtext($1));

-- name: reserve_login_attempt
-- Count this attempt before hashing, unless username+address (limit $3) or the
-- address alone (limit $3 * 10) is at its limit: then record nothing and say
-- how many seconds until the n-th newest attempt in the window expires.
WITH wait AS (
    SELECT EXTRACT(EPOCH FROM GREATEST(
        (SELECT failed_at FROM login_failures
         WHERE username = $1 AND address = $2 AND failed_at > now() - interval '15 minutes'
         ORDER BY failed_at DESC OFFSET $3 - 1 LIMIT 1),
        (SELECT failed_at FROM login_failures
         WHERE address = $2 AND failed_at > now() - interval '15 minutes'
         ORDER BY failed_at DESC OFFSET $3 * 10 - 1 LIMIT 1)
    ) + interval '15 minutes' - now())::float8 AS seconds
), reserved AS (
    INSERT INTO login_failures (username, address)
    SELECT $1, $2 FROM wait WHERE wait.seconds IS NULL
    RETURNING id
)
SELECT (SELECT id FROM reserved) AS attempt_id, (SELECT seconds FROM wait) AS wait_seconds;

-- name: delete_login_failures
-- A successful login forgives this username+address's earlier mistakes.
DELETE FROM login_failures WHERE username = $1 AND address = $2;

-- name: delete_old_login_failures
DELETE FROM login_failures WHERE failed_at <= now() - interval '15 minutes';
