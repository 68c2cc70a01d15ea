-- Statements of the PostgreSQL fan-out backend (secure_link/fanout_backends.py).
-- LISTEN/UNLISTEN are not here: asyncpg's add_listener/remove_listener issue
-- them on the dedicated LISTEN connection with a quoted identifier.

-- name: fanout_notify
-- Runs on the publish pool, never on the LISTEN connection, so concurrent
-- publishes cannot collide; one round trip notifies every channel in $1.
SELECT pg_notify(channel, $2) FROM unnest($1::text[]) AS channel;

-- name: fanout_notify_pairs
-- A batch of messages in one round trip: $1[i] gets $2[i], in array order,
-- which is the order receivers get them in.
SELECT pg_notify(channel, payload) FROM unnest($1::text[], $2::text[]) AS pair (channel, payload);

-- name: fanout_spill_notify
-- NOTIFY payloads must stay under 8,000 bytes: park a large message and notify
-- '@' and its id in the same transaction, so the row is visible to every receiver.
-- The channels are kept with it, so a clearing can find and drop it ($1 are identifiers).
WITH spilled AS (
    INSERT INTO fanout_spill (payload, channels) VALUES ($2, $1::text[]) RETURNING id
)
SELECT pg_notify(channel, '@' || id) FROM spilled, unnest($1::text[]) AS channel;

-- name: fanout_fetch_spill
-- Each receiving worker reads a parked message once and delivers it to all its local subscribers.
SELECT payload FROM fanout_spill WHERE id = $1;

-- name: fanout_prune_spill
-- Receivers read a parked message within milliseconds; one read after $1 seconds
-- finds nothing and sends its subscribers a GAP, so they catch up from the messages.
DELETE FROM fanout_spill WHERE created_at < now() - make_interval(secs => $1);

-- name: fanout_forget_spill
-- Logout's clearing: a parked message of any of these channels goes with the conversation.
DELETE FROM fanout_spill WHERE channels && $1::text[];

-- name: fanout_probe
-- asyncpg does not notice an idle LISTEN connection dying; a round trip with a timeout does.
SELECT 1;
