-- chatd schema version 1 for PostgreSQL: the tables of 001-initial.sqlite.sql
-- (whose comments say what each holds), with the types PostgreSQL needs.
-- Times in milliseconds outgrow a 32-bit INTEGER, so they are BIGINT; binary
-- columns are BYTEA; message ids come from an identity column where SQLite
-- uses the rowid.

CREATE TABLE accounts (
    name_key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    password_hash BYTEA,
    public_key BYTEA NOT NULL,
    created_ms BIGINT NOT NULL
);

CREATE TABLE rooms (
    name_key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    password_hash BYTEA,
    created_ms BIGINT NOT NULL
);

CREATE TABLE memberships (
    room_key TEXT NOT NULL REFERENCES rooms (name_key) ON DELETE CASCADE,
    user_key TEXT NOT NULL REFERENCES accounts (name_key) ON DELETE CASCADE,
    PRIMARY KEY (room_key, user_key)
);

CREATE INDEX memberships_user ON memberships (user_key);

CREATE TABLE messages (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    room_key TEXT NOT NULL REFERENCES rooms (name_key) ON DELETE CASCADE,
    sender TEXT NOT NULL,
    sender_key TEXT NOT NULL,
    ts BIGINT NOT NULL,
    envelope_id TEXT NOT NULL,
    body BYTEA NOT NULL,
    UNIQUE (sender_key, envelope_id)
);

CREATE INDEX messages_room_ts ON messages (room_key, ts);

CREATE TABLE message_readers (
    message_id BIGINT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    reader_key TEXT NOT NULL,
    PRIMARY KEY (reader_key, message_id)
);

CREATE INDEX message_readers_message ON message_readers (message_id);
