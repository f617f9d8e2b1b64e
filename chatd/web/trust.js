// Trust in other people's keys: a key is pinned on first sight; a key that
// differs from the pin raises the alarm, blocks sending to that person and
// holds their messages until the person checks the new key. Our own key is
// only ever compared with the server's word (ownkey.js).

import * as e2e from "./crypto.js";
import * as store from "./store.js";
import { refreshRoom, systemNote } from "./conversations.js";
import { observeList, refreshList } from "./devicetrust.js";
import { describeError, toast } from "./dom.js";
import { renderAlerts } from "./keychange.js";
import { dropped, queueIncoming } from "./messaging.js";
import { OwnKey } from "./ownkey.js";
import { renderAll, renderComposer, renderMembers, renderSelfKey, renderSidebar } from "./render.js";
import { fingerprintOf, fold, state } from "./state.js";

export function newOwnKey() {
  return new OwnKey(() => {
    console.warn("chatd: the server gives another key for", state.me);
    renderSelfKey();
    renderComposer();
  });
}

// The server says our name has key `spki`: compared with this browser's key,
// never used. Called before any await, so that a claim is checked in the
// order the server made it.
export function checkOwnKey(name, spki) {
  if (!state.me || fold(name) !== fold(state.me)) return false;
  state.ownKey.check(spki, state.ikSpki ?? state.identity?.spki);
  return true;
}

// The server says `name` has key `spki`. Pin it on first sight; if it differs
// from the pin, raise the alarm (and keep the pin until the person decides).
// A guest (the server says so: `guest`) has no account, so a name says
// nothing about who holds it: a guest's key is never pinned, never compared
// with a pin, and a later account of that name is a first sight.
// Returns "self", "guest", "new", "same" or "changed".
export async function observeKey(name, spki, guest = false) {
  if (fold(name) === fold(state.me)) return "self";
  const key = fold(name);
  if (guest) {
    // A pinned account's changed key is its own business: the guest who holds
    // the name now is not blocked for it.
    state.guests.add(key);
    if (state.alerts.delete(key)) renderAlerts();
    return "guest";
  }
  state.guests.delete(key);
  const pin = state.pins.get(key);
  if (!pin) {
    const fresh = { name, spki, verified: false, firstSeen: Date.now(), fp: await fingerprintOf(spki) };
    if (state.pins.has(key)) return observeKey(name, spki); // pinned meanwhile
    state.pins.set(key, fresh);
    store.savePin(state.me, name, fresh).catch((e) => console.error("saving a pin", e));
    return "new";
  }
  if (e2e.equalBytes(pin.spki, spki)) {
    if (state.alerts.delete(key)) {
      // Back to the pinned key: what waited is checked with it.
      renderAlerts();
      releaseHeld(key);
    }
    return "same";
  }
  const existing = state.alerts.get(key);
  if (!existing || !e2e.equalBytes(existing.spki, spki)) {
    state.alerts.set(key, { name, spki, fp: await fingerprintOf(spki), oldFp: pin.fp || (await fingerprintOf(pin.spki)) });
    for (const conv of conversationsWith(name)) {
      systemNote(conv, `Security warning: ${name}'s key has changed. Sending to ${name} is blocked until you verify the new key.`, true);
    }
    renderAlerts();
    renderSidebar();
  }
  return "changed";
}

export function conversationsWith(name) {
  const key = fold(name);
  const out = [];
  for (const room of state.rooms.values()) if (room.members.has(key)) out.push(room);
  const dm = state.dms.get(key);
  if (dm) out.push(dm);
  return out;
}

// The last characters of a fingerprint that a person types to accept a
// changed key (the terminal client's /trust NAME ABCD asks for the same).
export const CONFIRM_CHARS = 4;

// Whether `typed` is the end of fingerprint `fp` (spaces and case aside).
export function confirmsFingerprint(fp, typed) {
  const end = fp.replace(/\s/g, "").slice(-CONFIRM_CHARS).toLowerCase();
  return String(typed).replace(/\s/g, "").toLowerCase() === end;
}

// Accept `name`'s new key once the person has compared it with them: `typed`
// must be the new fingerprint's last characters. Returns false when it is
// not; else the outcomes of the held messages, checked again in order.
export async function trustNewKey(name, typed) {
  const key = fold(name);
  const alert = state.alerts.get(key);
  if (!alert || !confirmsFingerprint(alert.fp, typed)) return false;
  const pin = { name: alert.name, spki: alert.spki, verified: true, firstSeen: Date.now(), fp: alert.fp };
  state.pins.set(key, pin);
  state.alerts.delete(key);
  await store.savePin(state.me, alert.name, pin);
  // A new identity key starts a new chain of device lists.
  state.deviceLists.delete(key);
  await store.deleteHead(state.me, alert.name);
  await refreshList(alert.name).catch(() => {});
  for (const conv of conversationsWith(name)) systemNote(conv, `You verified ${alert.name}'s new key.`);
  renderAll();
  // Messages that waited for this decision are checked again with the new pin.
  return releaseHeld(key);
}

// The messages held for `key`'s sender, in the order they came, no longer held.
function takeHeld(key) {
  const held = state.held.filter((h) => fold(h.sender) === key);
  state.held = state.held.filter((h) => fold(h.sender) !== key);
  return held;
}

// Check the messages held for `key`'s sender again, with whatever is pinned
// now. Returns their outcomes.
function releaseHeld(key) {
  return Promise.all(takeHeld(key).map(queueIncoming));
}

// The person says `name`'s new key is not theirs: the messages held for it
// are dropped, and so is what comes signed with it; sending stays blocked.
export function rejectNewKey(name) {
  const key = fold(name);
  const alert = state.alerts.get(key);
  if (!alert) return;
  alert.rejected = true;
  const outcomes = takeHeld(key).map((h) => dropped(h.conv, h.sender, `you rejected ${alert.name}'s new key`, true, "rejected-key"));
  for (const conv of conversationsWith(name)) systemNote(conv, `You rejected ${alert.name}'s new key.`, true);
  renderAll();
  return outcomes;
}

export async function markVerified(name) {
  const pin = state.pins.get(fold(name));
  if (!pin) return;
  pin.verified = true;
  await store.savePin(state.me, pin.name, pin);
  renderMembers();
}

// The key a message from `name` must be signed with: the pinned one; on first
// sight, the one the server gives for that user (and it is pinned); for a
// guest, the one the server gives (never pinned).
export async function senderKey(name, conv) {
  const key = fold(name);
  if (key === fold(state.me)) return state.identity.spki;
  const pin = state.pins.get(key);
  if (pin && !state.guests.has(key)) return pin.spki;
  let spki = conv?.members?.get(key)?.spki;
  if (!spki && conv?.kind === "dm" && conv.key === key) spki = conv.peerSpki;
  let guest = state.guests.has(key);
  let list;
  if (!spki) {
    try {
      const reply = await state.conn.request("get_keys", { userId: name });
      const entry = reply.members.find((m) => fold(m.userId) === key);
      if (entry) [spki, guest, list] = [e2e.pemToDer(entry.publicKey), entry.guest === true, entry.devices];
    } catch (e) {
      return null;
    }
  }
  if (!spki) return null;
  const outcome = await observeKey(name, spki, guest);
  if (list !== undefined) await observeList(name, guest ? null : list);
  if (outcome === "guest") return spki;
  return state.pins.get(key)?.spki ?? null;
}

export async function publishOwnKey() {
  try {
    state.ownKey.setAside();
    let replaced = state.ownKey.conflict;
    try {
      await state.conn.request("set_key", { publicKey: e2e.derToPem(state.identity.spki) });
      // Events the server sent before it had our key still name the old one.
      await state.events;
      state.ownKey.clear();
    } catch (e) {
      replaced = null;
      throw e;
    } finally {
      state.ownKey.resume(replaced);
    }
    renderSelfKey();
    renderComposer();
    toast("Your account now uses this browser's key; your contacts are told it changed.");
    for (const room of state.rooms.values()) refreshRoom(room, false);
  } catch (e) {
    toast(describeError(e), "error");
  }
}
