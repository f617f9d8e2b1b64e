// Signing in as a device (protocol version 3): this browser keeps its own
// device key and signs in with it; the password is needed only for a new
// device, which waits, pending, until a device holding the identity key
// approves it with the code it shows. The first device of an account makes
// the identity key and a recovery code that seals it for the server to keep.

import * as e2e from "./crypto.js";
import * as devices from "./devices.js";
import * as store from "./store.js";
import { connect } from "./session.js";
import { listOfJson, listToJson, observeList } from "./devicetrust.js";
import { showPending, showRecoveryCode } from "./deviceui.js";
import { fold, state } from "./state.js";

// A device id for this browser: "browser-" and four base32 characters.
export function newDeviceId() {
  return `browser-${devices.newCode(4)}`;
}

// Create `name`'s account from this browser: the identity key (this device's
// key), list version 1 naming this device, and the identity key sealed under
// a recovery code shown once.
export async function register(name, password, invite) {
  const recovery = devices.newCode(devices.RECOVERY_CHARS);
  const identity = await e2e.generateIdentity((pkcs8) => devices.sealRecovery(recovery, name, pkcs8));
  const blob = identity.extra;
  delete identity.extra;
  identity.device = newDeviceId();
  const mine = [{ id: identity.device, spki: identity.spki }];
  const text = await devices.listText(name, 1, "", mine);
  const signature = await devices.signList(identity.pss, text);
  const fields = {
    userId: name, publicKey: e2e.derToPem(identity.spki), device: identity.device,
    list: listToJson({ text, signature }, mine), blob: e2e.b64(blob),
  };
  if (password) fields.password = password;
  if (invite) fields.invite = invite;
  const reply = await state.conn.request("register", fields);
  await store.saveIdentity(reply.userId, identity);
  return { reply, identity, recovery };
}

// Sign in with the password as this browser's device (made now if this
// browser has none for `name`). Returns { reply, identity }; reply.state is
// "approved" or "pending".
export async function passwordLogin(name, password, identity) {
  if (!identity) {
    identity = await e2e.generateIdentity();
    delete identity.extra;
  }
  if (!identity.device) {
    identity.device = newDeviceId();
    await store.saveIdentity(name, identity);
  }
  const reply = await state.conn.request("login", {
    userId: name, password, device: identity.device, deviceKey: e2e.derToPem(identity.spki),
  });
  // A pending session may not be named yet in the answer.
  await store.saveIdentity(reply.userId || name, identity);
  return { reply, identity };
}

// Prove who we are with this browser's device key. A key this browser kept
// from before devices is the account's only key: it signs in as a device too
// (of an account without a list, whose key it is), named now.
export async function keyLogin(name, identity) {
  if (!identity.device) {
    identity.device = newDeviceId();
    await store.saveIdentity(name, identity);
  }
  const { challenge } = await state.conn.request("get_challenge");
  const signature = await e2e.signDeviceAuth(identity.pss, e2e.unb64(challenge), name, identity.device);
  return state.conn.request("authenticate", { userId: name, device: identity.device, signature: e2e.b64(signature) });
}

// Once approved: our account's identity key (ours, or the one the approving
// device vouched for; never the server's word alone) and our own list. An
// account without a list (made by a version 1 client) whose key is this
// browser's gets list version 1 naming this device.
export async function settle(identity, serverIk) {
  state.identity = identity;
  state.device = identity.device;
  state.ikSpki = identity.ik ?? identity.spki;
  state.ownKey.check(serverIk, state.ikSpki);
  const reply = await state.conn.request("get_devices", { userId: state.me });
  let own = await observeList(state.me, reply.list, true);
  if (own?.legacy && isIdentityDevice()) {
    await publishList([{ id: state.device, spki: identity.spki }], null);
    own = state.deviceLists.get(fold(state.me));
  }
  return own;
}

// Whether this browser holds the account's identity key (it alone approves
// and removes devices).
export function isIdentityDevice() {
  return Boolean(state.identity && state.ikSpki && e2e.equalBytes(state.identity.spki, state.ikSpki));
}

// Our next list naming `mine` ({ id, spki }), after the head held (`held`, or
// null for version 1), signed: { text, signature, json }.
export async function nextList(mine, held) {
  const version = held ? held.version + 1 : 1;
  const text = await devices.listText(state.me, version, held ? held.hash : "", mine);
  const signature = await devices.signList(state.identity.pss, text);
  return { text, signature, json: listToJson({ text, signature }, mine) };
}

export async function publish(next) {
  await state.conn.request("publish_devices", next.json);
  await observeList(state.me, next.json, true);
}

export async function publishList(mine, held) {
  const next = await nextList(mine, held);
  await publish(next);
  return next;
}

// -- a new device, waiting ------------------------------------------------------

// Ask to be approved: a code that never leaves this browser, and the tag that
// proves our key to whoever types it. Events wait until the approval.
export async function requestApproval(identity, password) {
  const code = devices.newCode();
  const tag = await devices.approvalTag(code, state.me, identity.spki);
  await state.conn.request("request_device", { tag: e2e.b64(tag) });
  state.pending = { code, identity, password, events: [], approval: null, listed: false };
  showPending(devices.formatCode(code));
}

// The approval reply came: used only once its MAC verifies under our code
// and the list it carries, signed by the identity key it carries, names this
// device with this browser's key. Returns the identity to go on with, or
// throws DeviceError.
export async function acceptApproval(replyB64) {
  const { code, identity } = state.pending;
  const reply = await devices.openReply(code, e2e.unb64(replyB64), state.me, identity.device, identity.spki);
  const checked = await devices.checkList(state.me, reply.ik, reply.list);
  if (!checked.devices.some((d) => d.id === identity.device && e2e.equalBytes(d.spki, identity.spki))) {
    throw new devices.DeviceError("approval: the list does not name this browser's key");
  }
  identity.ik = reply.ik;
  await store.saveIdentity(state.me, identity);
  await store.saveHead(state.me, state.me, devices.advance(null, checked));
  for (const pin of reply.pins) {
    if (fold(pin.user) === fold(state.me) || state.pins.has(fold(pin.user))) continue;
    const saved = { name: pin.user, spki: pin.spki, verified: false, firstSeen: Date.now() };
    await store.savePin(state.me, pin.user, saved);
  }
  return identity;
}

// Start over: a new identity key (this device's), list version 1 and a new
// recovery code. Everyone who pinned the old key is warned, loudly.
export async function resetIdentity() {
  const recovery = devices.newCode(devices.RECOVERY_CHARS);
  const identity = await e2e.generateIdentity((pkcs8) => devices.sealRecovery(recovery, state.me, pkcs8));
  const blob = identity.extra;
  delete identity.extra;
  identity.device = state.pending.identity.device;
  const mine = [{ id: identity.device, spki: identity.spki }];
  const text = await devices.listText(state.me, 1, "", mine);
  const signature = await devices.signList(identity.pss, text);
  await state.conn.request("reset_identity", {
    publicKey: e2e.derToPem(identity.spki), device: identity.device,
    text: e2e.b64(text), signature: e2e.b64(signature), blob: e2e.b64(blob),
  });
  state.deviceLists.delete(fold(state.me));
  await store.deleteHead(state.me, state.me);
  await store.saveIdentity(state.me, identity);
  showRecoveryCode(recovery);
  return identity;
}

// Restore the identity key from the copy the server keeps sealed under the
// recovery code, opened here. The key opened must be the one the account's
// list is signed with and names; this browser then signs in again as that
// device (no key change). Returns the identity to go on with.
export async function recover(code) {
  const { blob } = await state.conn.request("get_recovery");
  const pkcs8 = await devices.openRecovery(code, state.me, e2e.unb64(blob || ""));
  let keys;
  try {
    keys = await e2e.importPrivate(pkcs8);
  } finally {
    pkcs8.fill(0);
  }
  const given = listOfJson((await state.conn.request("get_devices", { userId: state.me })).list);
  const probe = e2e.randomBytes(32);
  const proof = await devices.signList(keys.pss, probe);
  let found = null;
  for (const d of given ? given.devices : []) {
    if (await devices.verifyList(d.spki, given.text, given.signature) && await devices.verifyList(d.spki, probe, proof)) {
      found = d;
      break;
    }
  }
  if (!found) throw new devices.DeviceError("recovery: the key recovered is not the one your device list is signed with");
  const identity = { spki: found.spki, oaep: keys.oaep, pss: keys.pss, device: found.id, ik: null };
  const { password } = state.pending;
  const old = state.conn;
  state.conn = null;
  old.close();
  await connect();
  const reply = await state.conn.request("login", {
    userId: state.me, password, device: found.id, deviceKey: e2e.derToPem(found.spki),
  });
  if (reply.state !== "approved") throw new devices.DeviceError("recovery: the server did not approve the recovered key");
  await store.saveIdentity(state.me, identity);
  return identity;
}
