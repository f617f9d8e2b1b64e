-- chatd schema version 5 for SQLite: who may read a message is a reader set
-- shared by every message sent to the same readers, rather than a row per
-- reader per message (a 200-member room wrote 200 rows a message).
-- 005-reader-sets.postgresql.sql declares the same with PostgreSQL's types.
--
-- A set is named by its digest: "sha256:" and the hex SHA-256 of its folded
-- reader keys, sorted, one per line (chatd.store.readers). A room's messages
-- share one set until its membership changes, so the sets grow with
-- membership changes, not with messages.
CREATE TABLE reader_sets (
    id INTEGER PRIMARY KEY,
    digest TEXT NOT NULL UNIQUE
);

-- History is read per reader: this key finds a reader's sets.
CREATE TABLE reader_set_members (
    set_id INTEGER NOT NULL REFERENCES reader_sets (id) ON DELETE CASCADE,
    reader_key TEXT NOT NULL,
    PRIMARY KEY (reader_key, set_id)
);

ALTER TABLE messages ADD COLUMN readers_id INTEGER REFERENCES reader_sets (id);

-- Retention drops the sets no message uses any more through this index.
CREATE INDEX messages_readers ON messages (readers_id);

-- The messages stored before keep exactly their readers: each gets a set of
-- its own, named "message ID" (no digest can take that name).
INSERT INTO reader_sets (digest) SELECT 'message ' || id FROM messages;

UPDATE messages SET readers_id =
    (SELECT s.id FROM reader_sets s WHERE s.digest = 'message ' || messages.id);

INSERT INTO reader_set_members (set_id, reader_key)
    SELECT m.readers_id, r.reader_key
    FROM message_readers r JOIN messages m ON m.id = r.message_id;

DROP TABLE message_readers;
