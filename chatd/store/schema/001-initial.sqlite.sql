-- chatd schema version 1: accounts, rooms, memberships and room history.
-- This is SQLite's; 001-initial.postgresql.sql declares the same tables with
-- PostgreSQL's types.
--
-- Every name is kept twice: name_key (chatd.names.fold) makes it unique
-- ignoring case, name keeps it as its owner wrote it. Times are milliseconds
-- since the epoch. A message body is the whole end-to-end envelope encrypted
-- again with the server's at-rest key; nothing else holds envelope content.

CREATE TABLE accounts (
    name_key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    password_hash BLOB,
    public_key BLOB NOT NULL,
    created_ms INTEGER NOT NULL
);

CREATE TABLE rooms (
    name_key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    password_hash BLOB,
    created_ms INTEGER NOT NULL
);

CREATE TABLE memberships (
    room_key TEXT NOT NULL REFERENCES rooms (name_key) ON DELETE CASCADE,
    user_key TEXT NOT NULL REFERENCES accounts (name_key) ON DELETE CASCADE,
    PRIMARY KEY (room_key, user_key)
);

-- roomsOf looks memberships up by user.
CREATE INDEX memberships_user ON memberships (user_key);

CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    room_key TEXT NOT NULL REFERENCES rooms (name_key) ON DELETE CASCADE,
    sender TEXT NOT NULL,
    sender_key TEXT NOT NULL,
    ts INTEGER NOT NULL,
    envelope_id TEXT NOT NULL,
    body BLOB NOT NULL,
    -- A sender's envelope ids are never reused: a repeat is a replay.
    UNIQUE (sender_key, envelope_id)
);

-- History pages back through one room by time.
CREATE INDEX messages_room_ts ON messages (room_key, ts);

-- Who holds a key entry in each message: history is read per reader.
CREATE TABLE message_readers (
    message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    reader_key TEXT NOT NULL,
    PRIMARY KEY (reader_key, message_id)
);

-- Deleting a room's messages finds their readers through this index.
CREATE INDEX message_readers_message ON message_readers (message_id);
