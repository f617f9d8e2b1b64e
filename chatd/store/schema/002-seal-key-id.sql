-- chatd schema version 2: each message body names the at-rest key that sealed
-- it (chatd.store.seal), for SQLite and PostgreSQL alike.
--
-- From this version a body is AES-256-GCM over the envelope, bound to its
-- row's room, sender and envelope id, and key_id is the id of the key that
-- sealed it. Rows written before keep key_id NULL: their body is a Fernet
-- token, which any key of the key file may open.

ALTER TABLE messages ADD COLUMN key_id TEXT;

-- At start, chatd finds the keys the stored messages are sealed with, and a
-- recent message of each to try them on, through this index; re-sealing
-- under a new key finds the rows still sealed with an old one here too.
CREATE INDEX messages_key ON messages (key_id, id);
