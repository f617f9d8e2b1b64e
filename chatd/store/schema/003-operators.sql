-- chatd schema version 3: what operators control (chatd.store.operations),
-- for SQLite and PostgreSQL alike (SQLite reads BIGINT as its INTEGER).
--
-- A banned account keeps its name and rooms but cannot log in on any door.
ALTER TABLE accounts ADD COLUMN banned INTEGER NOT NULL DEFAULT 0;

-- Invite tokens for --registration invite. Only the SHA-256 of a token is
-- kept, so a copy of the database gives no token that still works. uses_left
-- counts down to 0; expires_ms is NULL for a token that does not expire.
CREATE TABLE invites (
    token_hash TEXT PRIMARY KEY,
    uses_left INTEGER NOT NULL,
    expires_ms BIGINT,
    created_ms BIGINT NOT NULL
);

-- Retention (--retention-days) deletes messages by age across every room.
CREATE INDEX messages_ts ON messages (ts);
