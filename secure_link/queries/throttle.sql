-- name: login_wait_seconds
-- Seconds until this username+address (limit $3) and this address alone
-- (limit $3 * 10) are both under their limits again; NULL when not throttled.
-- The n-th newest failure in the window is the one whose expiry lifts the block.
SELECT EXTRACT(EPOCH FROM GREATEST(
    (SELECT failed_at FROM login_failures
     WHERE username = $1 AND address = $2 AND failed_at > now() - interval '15 minutes'
     ORDER BY failed_at DESC OFFSET $3 - 1 LIMIT 1),
    (SELECT failed_at FROM login_failures
     WHERE address = $2 AND failed_at > now() - interval '15 minutes'
     ORDER BY failed_at DESC OFFSET $3 * 10 - 1 LIMIT 1)
) + interval '15 minutes' - now())::float8 AS wait;

-- name: insert_login_failure
INSERT INTO login_failures (username, address) VALUES ($1, $2);

-- name: delete_login_failures
-- A successful login forgives this username+address's earlier mistakes.
DELETE FROM login_failures WHERE username = $1 AND address = $2;

-- name: delete_old_login_failures
DELETE FROM login_failures WHERE failed_at <= now() - interval '15 minutes';
