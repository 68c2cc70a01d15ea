-- Blocks (contract v1.2; secure_link/blocks.py). The send statement reads them
-- through blocked_after() (schema.sql), after its locks.

-- name: insert_block
-- Again: nothing changes, and the original `since` comes back.
WITH added AS (
    INSERT INTO blocks (blocker_id, blocked_id) VALUES ($1, $2)
    ON CONFLICT DO NOTHING
    RETURNING since
)
SELECT since FROM added
UNION ALL
SELECT since FROM blocks WHERE blocker_id = $1 AND blocked_id = $2 AND NOT EXISTS (SELECT 1 FROM added);

-- name: delete_block
DELETE FROM blocks WHERE blocker_id = $1 AND blocked_id = $2;

-- name: list_blocks
SELECT u.username, b.since FROM blocks b JOIN users u ON u.id = b.blocked_id
WHERE b.blocker_id = $1 ORDER BY b.since DESC, u.username;

-- name: blocked_between
-- Either way: the one rule of every refusal (sends, timers, deletes, signals).
SELECT EXISTS (SELECT 1 FROM blocks
               WHERE (blocker_id = $1 AND blocked_id = $2) OR (blocker_id = $2 AND blocked_id = $1));
