-- chatd schema version 6: several devices per account, messages that wait,
-- history for new members (chatd.store.devices). This is SQLite's;
-- 006-devices.postgresql.sql declares the same with PostgreSQL's types.

-- How many of its latest messages a room lets new members read (0-500).
ALTER TABLE rooms ADD COLUMN history INTEGER NOT NULL DEFAULT 0;

-- An account's device list head: the canonical bytes its identity key
-- signed, the signature, the version and the hex SHA-256 of the bytes. An
-- account without a row is a legacy account (one device, its key).
CREATE TABLE device_lists (
    user_key TEXT PRIMARY KEY REFERENCES accounts (name_key) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    digest TEXT NOT NULL,
    text BLOB NOT NULL,
    signature BLOB NOT NULL
);

-- The devices of the head, with their keys, in the list's order.
CREATE TABLE devices (
    user_key TEXT NOT NULL REFERENCES accounts (name_key) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    device TEXT NOT NULL,
    public_key BLOB NOT NULL,
    PRIMARY KEY (user_key, device)
);

-- Key hashes a list of the account removed: never admitted again.
CREATE TABLE removed_devices (
    user_key TEXT NOT NULL REFERENCES accounts (name_key) ON DELETE CASCADE,
    key_hash TEXT NOT NULL,
    PRIMARY KEY (user_key, key_hash)
);

-- New devices waiting to be approved, until expires_ms.
CREATE TABLE pending_devices (
    user_key TEXT NOT NULL REFERENCES accounts (name_key) ON DELETE CASCADE,
    device TEXT NOT NULL,
    public_key BLOB NOT NULL,
    tag BLOB NOT NULL,
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (user_key, device)
);

-- The identity key's private key sealed under the recovery code (the server
-- cannot open it).
CREATE TABLE recovery_blobs (
    user_key TEXT PRIMARY KEY REFERENCES accounts (name_key) ON DELETE CASCADE,
    blob BLOB NOT NULL
);

-- One store-wide sequence over every stored message, room or direct, that
-- devices catch up from. Rows stored before count in id order.
CREATE TABLE message_sequence (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    value INTEGER NOT NULL
);
INSERT INTO message_sequence (singleton, value)
    SELECT 1, COALESCE(MAX(id), 0) FROM messages;
ALTER TABLE messages ADD COLUMN seq INTEGER;
UPDATE messages SET seq = id;
CREATE INDEX messages_seq ON messages (seq);

-- Direct messages between accounts, sealed at rest like room messages (the
-- seal is bound to pair_key, the two folded names sorted, joined by "\n").
CREATE TABLE direct_messages (
    id INTEGER PRIMARY KEY,
    seq INTEGER NOT NULL,
    pair_key TEXT NOT NULL,
    sender TEXT NOT NULL,
    sender_key TEXT NOT NULL,
    peer TEXT NOT NULL,
    peer_key TEXT NOT NULL,
    ts INTEGER NOT NULL,
    envelope_id TEXT NOT NULL,
    key_id TEXT,
    body BLOB NOT NULL,
    UNIQUE (sender_key, envelope_id)
);
CREATE INDEX direct_messages_pair ON direct_messages (pair_key, ts);
CREATE INDEX direct_messages_seq ON direct_messages (seq);

CREATE TABLE direct_readers (
    message_id INTEGER NOT NULL REFERENCES direct_messages (id) ON DELETE CASCADE,
    reader_key TEXT NOT NULL,
    PRIMARY KEY (reader_key, message_id)
);
CREATE INDEX direct_readers_message ON direct_readers (message_id);

-- Key entries members added to a stored room message for a newcomer's
-- devices (SHARE_HISTORY): the envelope's signature does not cover its key
-- maps, so they are merged in when it is read back.
CREATE TABLE message_shares (
    message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    entry_key TEXT NOT NULL,
    -- The entry key as history is read by (chatd.store.entries.readerKey).
    reader_key TEXT NOT NULL,
    encrypted_key TEXT NOT NULL,
    key_id TEXT NOT NULL,
    PRIMARY KEY (message_id, entry_key)
);
CREATE INDEX message_shares_reader ON message_shares (reader_key, message_id);

-- The highest sequence delivered to each device (written when its session
-- closes and every few seconds, never per delivery).
CREATE TABLE device_marks (
    user_key TEXT NOT NULL REFERENCES accounts (name_key) ON DELETE CASCADE,
    device TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (user_key, device)
);
