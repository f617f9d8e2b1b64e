-- chatd schema version 4: room moderation (chatd.store.moderation), for
-- SQLite and PostgreSQL alike (SQLite reads BIGINT as its INTEGER).
--
-- A room's topic, shown on joining it. NULL: no topic. A topic keeps its room
-- when it empties, as a password or history does.
ALTER TABLE rooms ADD COLUMN topic TEXT;

-- Who runs each room: 'owner' (made by creating the room or by chatd-admin
-- owner) or 'operator' (made by an owner). Only accounts hold roles; a role
-- goes with its room or its account.
CREATE TABLE room_roles (
    room_key TEXT NOT NULL REFERENCES rooms (name_key) ON DELETE CASCADE,
    user_key TEXT NOT NULL REFERENCES accounts (name_key) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('owner', 'operator')),
    PRIMARY KEY (room_key, user_key)
);

-- Who may not come back into a room, by folded name (a guest's name too, so
-- no account of that name is made to slip past it later), who banned them,
-- when and why. A ban keeps its room when it empties: a banned user must not
-- be able to wait for the room to go and make it again as its owner.
CREATE TABLE room_bans (
    room_key TEXT NOT NULL REFERENCES rooms (name_key) ON DELETE CASCADE,
    user_key TEXT NOT NULL,
    name TEXT NOT NULL,
    banned_by TEXT NOT NULL,
    banned_ms BIGINT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (room_key, user_key)
);

-- An account's roles are found by user when it is deleted.
CREATE INDEX room_roles_user ON room_roles (user_key);
