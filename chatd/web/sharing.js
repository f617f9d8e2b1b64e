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
