// Events from the server, handled one at a time in the order they came. Each
// type has one handler, registered with on(type, handler): a feature module
// adds its events by registering its own handlers, without touching this file.

import * as e2e from "./crypto.js";
import { addRoom, dmWith, refreshRoom, removeRoom, systemNote } from "./conversations.js";
import { toast } from "./dom.js";
import { transfers } from "./filecards.js";
import { queueIncoming } from "./messaging.js";
import { renderAll, renderHeader, renderMembers } from "./render.js";
import { fingerprintOf, fold, state, USER_RE } from "./state.js";
import { observeMember } from "./devicetrust.js";
import { pendingListed } from "./deviceui.js";
import { checkOwnKey } from "./trust.js";

const handlers = new Map(); // event type -> async handler(message)

// Handle events of `type` with `handler(message)` (may be async; the next
// event waits for it). A feature module calls this from its wire function
// (at its own top level this module may not be evaluated yet).
export function on(type, handler) {
  if (handlers.has(type)) throw new Error(`chatd: two handlers for ${type}`);
  handlers.set(type, handler);
}

export function queueEvent(message) {
  state.events = state.events.then(() => onEvent(message)).catch((e) => console.error("chatd: event", message.type, e));
}

// Hold events back (they queue) until the returned function is called: while
// signing in, events for rooms the server restores must wait for our state.
export function holdEvents() {
  let release;
  const gate = new Promise((resolve) => { release = resolve; });
  state.events = state.events.then(() => gate);
  return release;
}

export async function onEvent(message) {
  if (!state.me || !state.identity) return;
  if (state.pending && message.type !== "approval") {
    // A device waiting for approval trusts nothing yet: what comes waits.
    state.pending.events.push(message);
    if (message.type === "devices_changed") await pendingListed(message);
    return;
  }
  if (transfers.handle(message)) return;
  const handler = handlers.get(message.type);
  if (handler) await handler(message);
  else console.debug("chatd: unhandled event", message.type);
}

// The job (messaging.js receive) for a chat_message or dm event: the
// conversation it belongs in, or null when it belongs in none of ours.
export function incomingFor(message) {
  let conv;
  if (message.type === "chat_message") {
    conv = state.rooms.get(fold(message.roomId));
  } else {
    const own = fold(message.userId) === fold(state.me);
    const peer = own ? message.envelope?.to?.user : message.userId;
    conv = typeof peer === "string" && USER_RE.test(peer) ? dmWith(peer) : null;
  }
  return conv ? { conv, sender: message.userId, envelope: message.envelope } : null;
}

for (const type of ["chat_message", "dm"]) {
  on(type, (message) => {
    const job = incomingFor(message);
    if (job) queueIncoming(job);
  });
}

on("user_joined", async (message) => {
  const spki = e2e.pemToDer(message.publicKey);
  if (checkOwnKey(message.userId, spki)) {
    // Our account is in a room we did not ask for here: restored at sign-in,
    // or joined by another of our sessions.
    if (!state.rooms.has(fold(message.roomId))) {
      const room = addRoom(message.roomId);
      await refreshRoom(room);
    }
    return;
  }
  const room = state.rooms.get(fold(message.roomId));
  if (!room) return;
  const guest = message.guest === true;
  room.members.set(fold(message.userId), { name: message.userId, spki, fp: await fingerprintOf(spki), guest });
  await observeMember(message.userId, spki, guest, message.devices);
  systemNote(room, `${message.userId} joined`);
  if (state.active === room) {
    renderHeader();
    renderMembers();
  }
});

on("user_left", (message) => {
  const room = state.rooms.get(fold(message.roomId));
  if (!room) return;
  if (fold(message.userId) === fold(state.me)) {
    removeRoom(room, `You left ${room.name}`);
    return;
  }
  room.members.delete(fold(message.userId));
  systemNote(room, `${message.userId} left`);
  if (state.active === room) {
    renderHeader();
    renderMembers();
  }
});

on("renamed", (message) => {
  for (const room of state.rooms.values()) {
    const m = room.members.get(fold(message.old));
    if (!m) continue;
    room.members.delete(fold(message.old));
    // The key follows in key_changed if it differs; ask to be sure.
    room.members.set(fold(message.new), { ...m, name: message.new, guest: message.guest === true });
    systemNote(room, `${message.old} is now ${message.new}`);
    refreshRoom(room, false).catch(() => {});
  }
  const dm = state.dms.get(fold(message.old));
  if (dm) systemNote(dm, `${message.old} is now known as ${message.new}`);
  renderAll();
});

on("key_changed", async (message) => {
  const spki = e2e.pemToDer(message.publicKey);
  if (checkOwnKey(message.userId, spki)) return;
  const fp = await fingerprintOf(spki);
  for (const room of state.rooms.values()) {
    const m = room.members.get(fold(message.userId));
    if (m) room.members.set(fold(message.userId), { ...m, spki, fp, guest: message.guest === true });
  }
  const dm = state.dms.get(fold(message.userId));
  if (dm) {
    dm.peerSpki = spki;
    dm.peerFp = fp;
  }
  await observeMember(message.userId, spki, message.guest === true, message.devices);
  renderAll();
});

on("warning", (message) => {
  toast(`Server: ${message.message}`, "error");
});
