// History for new members (docs/protocol.rst): when someone joins a room
// that lets new members read its last N messages, the server asks a few
// members' devices (share_wanted) to re-wrap those messages' keys for the
// newcomer's devices. This page does it only for messages of that room (the
// signed `to`) whose signed `hist` is above 0, that it can read as a member,
// at most `hist` of the latest, and only for the newcomer's devices a list
// signed by their pinned identity key names. The newcomer's page checks each
// message as usual (signature, `to`, key commitment): a forwarder can neither
// change content nor move it.

import * as e2e from "./crypto.js";
import { entryKey, ownEntry, refreshList, signingKey } from "./devicetrust.js";
import { on } from "./events.js";
import { fold, state } from "./state.js";
import { senderKey } from "./trust.js";

// The entries this page adds for `newcomer` to the room's `rows` (history
// rows, oldest first): [{ id, keys: { encrypted_keys, key_ids } }].
export async function rewrap(room, newcomer, rows) {
  const held = state.deviceLists.get(fold(newcomer));
  if (!held || held.legacy || !held.devices.length) return [];
  const entries = [];
  for (const [i, row] of rows.entries()) {
    const fromEnd = rows.length - 1 - i;
    let env;
    try {
      env = e2e.checkEnvelope(row.envelope);
    } catch (e) {
      continue;
    }
    const [[toKind, toName]] = Object.entries(env.to);
    if (env.v !== 2 || env.hist <= fromEnd || toKind !== "room" || fold(toName) !== room.key) continue;
    if (env.from !== row.userId) continue;
    const spki = await signingKey(row.userId, env, await senderKey(row.userId, room));
    if (!spki || !(await e2e.verifySignature(env, spki))) continue;
    const wanted = new Map();
    for (const d of held.devices) {
      const entry = entryKey(newcomer, d.id);
      if (!Object.prototype.hasOwnProperty.call(env.encrypted_keys, entry)) wanted.set(entry, d.spki);
    }
    if (!wanted.size) continue;
    let key;
    try {
      key = await e2e.unwrapKey(env, ownEntry(), state.identity.oaep);
    } catch (e) {
      continue; // not one we received as a member
    }
    try {
      entries.push({ id: env.id, keys: await e2e.wrapKey(key, wanted) });
    } finally {
      key.fill(0);
    }
  }
  return entries;
}

// Whether a history row of `conv` (its checked envelope `env`) can only be
// one shared with us: sent (its signed time) before this page joined the
// room, and not one this browser received live (replay.js), as it may have in
// an earlier membership. Rooms joined before this page loaded are taken as
// received as a member.
export function sharedWithUs(conv, env) {
  return conv.kind === "room" && conv.joinedAt > 0 && env.ts < conv.joinedAt
    && !state.replay.seen.has(`${fold(env.from)}\n${env.id}`);
}

// Why a message shared with us must be refused, or null: `env` has a verified
// signature; `newer` is how many shared rows of the room are newer than it.
export function shareRefusal(conv, env, newer) {
  const [[toKind, toName]] = Object.entries(env.to);
  if (toKind !== "room") return "it is a direct message, not this room's";
  if (fold(toName) !== conv.key) return `it was sent to the room ${toName}`;
  if (env.v !== 2 || !(env.hist > 0)) return "its sender did not let new members read it";
  if (newer >= env.hist) return `its sender let new members read only the latest ${env.hist}`;
  return null;
}

// How many shared rows are newer than each of `rows` (oldest first; null for
// a row not shared with us), counting from `newer` more recent ones.
export function shareRanks(conv, rows, newer) {
  const ranks = new Array(rows.length).fill(null);
  for (let i = rows.length - 1; i >= 0; i--) {
    let env;
    try {
      env = e2e.checkEnvelope(rows[i].envelope);
    } catch (e) {
      continue; // receive() drops it
    }
    if (sharedWithUs(conv, env)) ranks[i] = newer++;
  }
  return { ranks, newer };
}

async function onShareWanted(message) {
  const room = state.rooms.get(fold(message.roomId));
  const newcomer = message.userId;
  const n = Math.min(Number(message.history) || 0, e2e.MAX_HISTORY);
  // Only to someone this page shows in the room, whose key is not in doubt.
  if (!room || !room.members.has(fold(newcomer)) || n <= 0) return;
  if (state.alerts.has(fold(newcomer)) || state.guests.has(fold(newcomer))) return;
  await refreshList(newcomer);
  const reply = await state.conn.request("history", { roomId: room.name, limit: n });
  const entries = await rewrap(room, newcomer, reply.messages || []);
  if (!entries.length) return;
  const { count } = await state.conn.request("share_history", { roomId: room.name, userId: newcomer, entries });
  console.info(`chatd: shared ${count} message key(s) of ${room.name} with ${newcomer}`);
}

export function wireSharing() {
  on("share_wanted", (message) => onShareWanted(message).catch((e) => console.warn("chatd: sharing history", e)));
}
