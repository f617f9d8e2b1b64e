// Other people's devices, and our own: which of the devices the server lists
// a message may be sealed for. Only a device named in a list signed by the
// account's pinned identity key counts (devices.js checkList); a list must
// follow the one held (no rollback, no fork, no removed key back); a device
// the server lists without that proof is a warning and never gets a key.
// A new device in a verified list is a quiet notice, not a key change.

import * as e2e from "./crypto.js";
import * as devices from "./devices.js";
import * as store from "./store.js";
import { systemNote } from "./conversations.js";
import { toast } from "./dom.js";
import { fold, state } from "./state.js";
import { conversationsWith, observeKey } from "./trust.js";

// The entry key of a reader: `user/device` for a device of an account with a
// list; the bare name for a legacy account or a guest (chatd/e2e.py entryKey).
export function entryKey(user, device) {
  return device ? `${user}/${device}` : user;
}

// Our entry in `env`: a version 1 envelope (from a legacy sender) is sealed
// for our account's identity key, under our bare name.
export function readerFor(env) {
  return env.v === 2 ? ownEntry() : state.me;
}

// Our own entry key in every envelope: this browser's device.
export function ownEntry() {
  const own = state.deviceLists.get(fold(state.me));
  return own && !own.legacy ? entryKey(state.me, state.device) : state.me;
}

// A JSON list object ({ text, signature, devices: [{ id, publicKey }] }) as bytes.
export function listOfJson(list) {
  if (!list || !list.text) return null;
  return {
    text: e2e.unb64(list.text),
    signature: e2e.unb64(list.signature || ""),
    devices: (list.devices || []).map((d) => ({ id: d.id, spki: e2e.pemToDer(d.publicKey) })),
  };
}

export function listToJson(list, deviceSpkis) {
  return {
    text: e2e.b64(list.text),
    signature: e2e.b64(list.signature),
    devices: deviceSpkis.map((d) => ({ id: d.id, publicKey: e2e.derToPem(d.spki) })),
  };
}

// `name`'s identity key as this page trusts it: ours, or the pin (none while
// a changed key waits for the person's decision).
function identityOf(name) {
  const key = fold(name);
  if (key === fold(state.me)) return state.ikSpki || state.identity?.spki;
  if (state.alerts.has(key) || state.guests.has(key)) return null;
  return state.pins.get(key)?.spki ?? null;
}

// Tell the conversations with `name`; what concerns no conversation (our
// own devices, people we share none with) is a toast when it is bad.
function note(name, text, bad) {
  const convs = conversationsWith(name);
  if (bad && (fold(name) === fold(state.me) || !convs.length)) toast(text, "error");
  for (const conv of convs) systemNote(conv, text, bad);
}

// The server's word on `name`'s list (a JSON list object, or null/empty for
// none). Returns what is held for `name` afterwards: { legacy, devices } or
// null when nothing may be sealed for `name` yet.
export async function observeList(name, json, quiet = false) {
  const key = fold(name);
  const ik = identityOf(name);
  const known = state.deviceLists.get(key);
  const given = listOfJson(json);
  if (!given) {
    // No list: a legacy account, one device whose key is the identity key;
    // unless a list was verified for it before (a rollback: refuse).
    if (known?.head) {
      warnOnce(name, "nolist", `The server gives no device list for ${name}, who has one: nothing is sent to ${name} until it does.`);
      return known;
    }
    const legacy = { legacy: true, head: null, devices: [] };
    state.deviceLists.set(key, legacy);
    return legacy;
  }
  if (!ik) return known ?? null;
  let checked;
  try {
    checked = await devices.checkList(name, ik, given);
  } catch (e) {
    warnOnce(name, `bad:${e2e.b64(given.text).slice(-16)}`, `${name}'s device list is refused: ${e.message.replace(/^device list: /, "")}. Nothing is sent to ${name}'s listed devices.`);
    return known ?? null;
  }
  for (const d of checked.unsigned) {
    warnOnce(name, `unsigned:${d.hash}`, `Warning: the server lists a device "${d.id}" for ${name} that ${name}'s identity key did not sign. It gets no key.`);
  }
  const held = known?.head ?? (await store.loadHead(state.me, name));
  const step = devices.chainStep(held, checked);
  if (step === "old" || step === "fork" || step === "broken" || step === "readmit") {
    const why = {
      old: `an older device list for ${name} than the one this browser holds (a rollback)`,
      fork: `two different device lists of the same version for ${name} (a fork)`,
      broken: `a device list for ${name} that does not follow the one this browser holds`,
      readmit: `a device list for ${name} that brings back a device that was removed`,
    }[step];
    warnOnce(name, `${step}:${checked.hash}`, `Security warning: the server gives ${why}. It is refused.`);
    return known?.head ? known : null;
  }
  const head = step === "same" ? held : devices.advance(held, checked);
  const before = known?.devices ?? [];
  const entry = { legacy: false, head, devices: checked.devices, unsigned: checked.unsigned };
  state.deviceLists.set(key, entry);
  if (step !== "same") {
    await store.saveHead(state.me, name, head);
    if (held && !quiet) {
      const had = new Set(before.map((d) => d.hash).concat([...held.hashes]));
      for (const d of checked.devices) if (!had.has(d.hash)) note(name, `${name} added device ${d.id}`, false);
      for (const h of held.hashes) {
        if (!head.hashes.has(h)) note(name, `${name} removed a device`, false);
      }
    }
  }
  return entry;
}

const warned = new Set();

function warnOnce(name, what, text) {
  const key = `${fold(name)}\n${what}`;
  if (warned.has(key)) return;
  warned.add(key);
  console.warn("chatd:", text);
  note(name, text, true);
}

// The server's word on member `name`: its identity key (pinned on first
// sight, trust.js) and, when it gave one, its device list (`list`: the JSON
// object, or undefined from a server that gives none).
export async function observeMember(name, spki, guest, list) {
  const outcome = await observeKey(name, spki, guest);
  if (list !== undefined) await observeList(name, guest ? null : list);
  return outcome;
}

// Ask the server for `name`'s keys and list again (a newer head was named,
// or a signing device is unknown).
export async function refreshList(name) {
  const reply = await state.conn.request("get_keys", { userId: name });
  const entry = reply.members.find((m) => fold(m.userId) === fold(name));
  if (entry) await observeMember(entry.userId, e2e.pemToDer(entry.publicKey), entry.guest === true, entry.devices);
}

// The key that signed `env` from `sender`: for a version 2 envelope from a
// device, that device's key from a verified list (fetched again when the
// envelope names a newer head, or a device not held); else the identity key
// (`identityKey`, trust.js senderKey's answer).
export async function signingKey(sender, env, identityKey) {
  if (!identityKey || env.v !== 2 || env.dev === "") return identityKey;
  const held = state.deviceLists.get(fold(sender));
  const newer = env.head.v > (held?.head?.version ?? 0);
  if (newer || !deviceKey(sender, env.dev)) await refreshList(sender).catch(() => {});
  const now = state.deviceLists.get(fold(sender));
  if (now?.head && env.head.v === now.head.version && env.head.h !== now.head.hash) {
    note(sender, `Security warning: ${sender} signed with a device list other than the one the server gives for version ${env.head.v} (a fork).`, true);
  }
  return deviceKey(sender, env.dev);
}

// The readers of a message for member `name` whose identity key is `ik`:
// [entry key, SPKI] pairs; null when no list is verified for an account that
// has one.
export function readersOf(name, ik) {
  const held = state.deviceLists.get(fold(name));
  if (!held || held.legacy) return [[name, ik]];
  return held.devices.map((d) => [entryKey(name, d.id), d.spki]);
}

// The key of `name`'s device `dev` from a verified list; null when none.
export function deviceKey(name, dev) {
  if (fold(name) === fold(state.me) && dev === state.device) return state.identity.spki;
  const held = state.deviceLists.get(fold(name));
  return held?.devices?.find((d) => d.id === dev)?.spki ?? null;
}

// Our own sending device's fields for a version 2 envelope.
export function sendingDevice(hist = 0) {
  const held = state.deviceLists.get(fold(state.me));
  const head = held?.head ? { v: held.head.version, h: held.head.hash } : null;
  return { dev: head ? state.device : "", head, hist };
}
