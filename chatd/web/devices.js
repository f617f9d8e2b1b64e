// An account's devices in WebCrypto (docs/protocol.rst, devices; the Python
// reference is chatd/devicelist.py, and the shared vectors in
// chatd/test/vectors/ hold both to the same bytes): the device list's
// canonical bytes, its signature by the identity key, the rules by which a
// list follows the one held, the approval code with its tag and reply MAC,
// and the recovery code that seals the identity key for the server to keep.
//
// Nothing here touches the page or the network.

import { b64, concat, equalBytes, fromUtf8, hex, randomBytes, sha256, unb64, utf8 } from "./crypto.js";

const subtle = globalThis.crypto.subtle;

export const LIST_DOMAIN = "chatd-devices-v1\0";
export const APPROVE_DOMAIN = "chatd-approve-v1\0";
export const APPROVED_DOMAIN = "chatd-approved-v1\0";
export const RECOVERY_INFO = "chatd-recovery-v1";
export const MAX_DEVICES = 16;
export const DEVICE_RE = /^[A-Za-z0-9_.-]{1,32}$/;
export const APPROVAL_CHARS = 20; // 100 bits
export const RECOVERY_CHARS = 26; // 130 bits

const PSS = { name: "RSA-PSS", saltLength: 32 };
const HASH_RE = /^[0-9a-f]{64}$/;
const VERSION_RE = /^[1-9][0-9]{0,9}$/;
const USER_RE = /^[A-Za-z0-9_.-]{1,32}$/;

export class DeviceError extends Error {}

// -- the list -----------------------------------------------------------------

// The name every client tracks a device by: hex SHA-256 of its SPKI DER.
export async function keyHash(spki) {
  return hex(await sha256(spki));
}

// The canonical bytes of `user`'s list `version` after the list whose hash is
// `prev` ("" for version 1), naming `devices` ({ id, spki }).
export async function listText(user, version, prev, devices) {
  const entries = [];
  for (const d of devices) entries.push({ id: d.id, hash: await keyHash(d.spki) });
  entries.sort((a, b) => (a.hash < b.hash ? -1 : a.hash > b.hash ? 1 : 0));
  let text = `${LIST_DOMAIN}${user}\n${version}\n${prev}\n`;
  for (const e of entries) text += `${e.id}\n${e.hash}\n`;
  const bytes = utf8(text);
  parseList(bytes); // what we would refuse from others, we never sign
  return bytes;
}

// The fields of canonical list bytes, checked as strictly as they are built:
// { user, version, prev, entries: [{ id, hash }] }.
export function parseList(bytes) {
  let text;
  try {
    text = fromUtf8(bytes);
  } catch (e) {
    throw new DeviceError("device list: not UTF-8");
  }
  if (!text.startsWith(LIST_DOMAIN)) throw new DeviceError("device list: not a chatd-devices-v1 list");
  const lines = text.slice(LIST_DOMAIN.length).split("\n");
  if (lines.pop() !== "" || lines.length < 3 || (lines.length - 3) % 2) {
    throw new DeviceError("device list: not whole lines");
  }
  const [user, version, prev] = lines;
  if (!USER_RE.test(user)) throw new DeviceError("device list: bad user name");
  if (!VERSION_RE.test(version)) throw new DeviceError("device list: bad version");
  const v = Number(version);
  if (v === 1 ? prev !== "" : !HASH_RE.test(prev)) throw new DeviceError("device list: bad previous hash");
  const entries = [];
  for (let i = 3; i < lines.length; i += 2) entries.push({ id: lines[i], hash: lines[i + 1] });
  if (entries.length < 1 || entries.length > MAX_DEVICES) throw new DeviceError("device list: 1 to 16 devices");
  const ids = new Set();
  for (const [i, e] of entries.entries()) {
    if (!DEVICE_RE.test(e.id) || !HASH_RE.test(e.hash)) throw new DeviceError("device list: bad device line");
    if (ids.has(e.id)) throw new DeviceError(`device list: two devices named ${e.id}`);
    if (i && entries[i - 1].hash >= e.hash) throw new DeviceError("device list: devices not sorted by key hash");
    ids.add(e.id);
  }
  return { user, version: v, prev, entries };
}

export async function listHash(bytes) {
  return hex(await sha256(bytes));
}

export async function signList(pssKey, bytes) {
  return new Uint8Array(await subtle.sign(PSS, pssKey, bytes));
}

// Whether identity key `ikSpki` signed `bytes`; never throws.
export async function verifyList(ikSpki, bytes, signature) {
  try {
    const key = await subtle.importKey("spki", ikSpki, { name: "RSA-PSS", hash: "SHA-256" }, false, ["verify"]);
    return await subtle.verify(PSS, key, signature, bytes);
  } catch (e) {
    return false;
  }
}

// What a list the server gives for `user` proves, checked against the pinned
// identity key `ikSpki`. `given`: { text, signature, devices: [{ id, spki }] }
// (bytes and DER). Returns { version, hash, prev, devices, unsigned, missing }:
// `devices` are the listed devices whose key the signed list names (the only
// ones anything is ever encrypted to), `unsigned` those the server lists that
// the signed list does not name (a warning), `missing` the ids the signed list
// names whose key the server left out. Throws DeviceError when the list is
// not signed by `ikSpki` or not `user`'s.
export async function checkList(user, ikSpki, given) {
  const fields = parseList(given.text);
  if (fields.user.toLowerCase() !== user.toLowerCase()) throw new DeviceError(`device list: not ${user}'s`);
  if (!(await verifyList(ikSpki, given.text, given.signature))) {
    throw new DeviceError(`device list: not signed by ${user}'s identity key`);
  }
  const byId = new Map(fields.entries.map((e) => [e.id, e.hash]));
  const devices = [];
  const unsigned = [];
  const named = new Set();
  for (const d of given.devices) {
    const hash = await keyHash(d.spki);
    if (byId.get(d.id) === hash && !named.has(d.id)) {
      named.add(d.id);
      devices.push({ id: d.id, spki: d.spki, hash });
    } else {
      unsigned.push({ id: d.id, spki: d.spki, hash });
    }
  }
  const missing = fields.entries.filter((e) => !named.has(e.id)).map((e) => e.id);
  return { version: fields.version, prev: fields.prev, hash: await listHash(given.text), devices, unsigned, missing };
}

// How a verified list `next` ({ version, hash, prev, devices }) stands to the
// one held, `held` ({ version, hash, hashes: key hashes, removed: key hashes
// a verified list dropped }, or null): "first", "same", "next" (accept it),
// "old" (a rollback: refuse), "fork" (same version, other hash: refuse,
// loudly), "broken" (the next version not built on the one held: refuse,
// loudly) or "readmit" (it names a key a list dropped: refuse, loudly). A
// list more than one version ahead is accepted: the identity key signed it,
// and nothing removed before comes back.
export function chainStep(held, next) {
  if (!held) return "first";
  if (next.version < held.version) return "old";
  if (next.version === held.version) return next.hash === held.hash ? "same" : "fork";
  if (next.version === held.version + 1 && next.prev !== held.hash) return "broken";
  return next.devices.some((d) => held.removed.has(d.hash)) ? "readmit" : "next";
}

// The head to hold after accepting `next` over `held` (see chainStep).
export function advance(held, next) {
  const hashes = new Set(next.devices.map((d) => d.hash));
  const removed = new Set(held ? held.removed : []);
  if (held) for (const h of held.hashes) if (!hashes.has(h)) removed.add(h);
  return { version: next.version, hash: next.hash, hashes, removed };
}

// -- codes --------------------------------------------------------------------

const BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

// `n` random base32 characters (a byte's low five bits are uniform).
export function newCode(n = APPROVAL_CHARS) {
  return Array.from(randomBytes(n), (b) => BASE32[b & 31]).join("");
}

// A typed code as the secret it spells: case aside, dashes allowed, spaces
// not; null when it is not `n` base32 characters.
export function normaliseCode(typed, n = APPROVAL_CHARS) {
  const code = String(typed).trim().replace(/-/g, "").toUpperCase();
  return code.length === n && [...code].every((c) => BASE32.includes(c)) ? code : null;
}

// A code in groups of four joined by dashes, easier to read out.
export function formatCode(code) {
  return code.match(/.{1,4}/g).join("-");
}

// The code as the secret it spells (see normaliseCode); a malformed one is
// refused rather than used.
function secretOf(code, n) {
  const secret = normaliseCode(code, n);
  if (!secret) throw new DeviceError(`code: must be ${n} letters and digits 2-7 (dashes allowed)`);
  return utf8(secret);
}

async function hmac(code, data) {
  const key = await subtle.importKey("raw", secretOf(code, APPROVAL_CHARS), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await subtle.sign("HMAC", key, data));
}

// User names enter the MACs and the recovery's associated data folded (ASCII
// lower case), so that two spellings of one account agree.
function folded(user) {
  return utf8(user.replace(/[A-Z]/g, (c) => c.toLowerCase()));
}

// The tag a pending device sends: it proves, to whoever knows the code, the
// key that device asks to be approved.
export function approvalTag(code, user, spki) {
  return hmac(code, concat(utf8(APPROVE_DOMAIN), folded(user), spki));
}

export async function tagMatches(code, user, spki, tag) {
  return equalBytes(await approvalTag(code, user, spki), tag);
}

// -- the approval reply ---------------------------------------------------------

// The reply an approving device sends the new one through the server: a MAC
// under the code, then JSON naming the user, the device and its key, with the
// identity key, the new list and the approver's pins, so that the new device
// uses nothing the server could have changed. `fields`: { user, device,
// deviceKey, ik, list: { text, signature, devices: [{ id, spki }] }, pins:
// [{ user, spki }] } (keys sorted, as chatd/devicecodes.py writes them).
export async function sealReply(code, fields) {
  const pins = {};
  for (const p of [...fields.pins].sort((a, b) => (a.user < b.user ? -1 : a.user > b.user ? 1 : 0))) pins[p.user] = b64(p.spki);
  const body = utf8(JSON.stringify({
    device: fields.device,
    deviceKey: b64(fields.deviceKey),
    identityKey: b64(fields.ik),
    list: {
      devices: fields.list.devices.map((d) => ({ id: d.id, publicKey: b64(d.spki) })),
      signature: b64(fields.list.signature),
      text: b64(fields.list.text),
    },
    pins,
    user: fields.user,
  }));
  return concat(await hmac(code, concat(utf8(APPROVED_DOMAIN), body)), body);
}

// What an approval reply gives this device ({ ik, list: { text, signature,
// devices }, pins: [{ user, spki }] }), once its MAC verifies under `code` and
// it approves this user, device and key; throws DeviceError otherwise (the
// server, or anyone without the code, made it). The list is checked by the
// caller (checkList with the identity key the reply carries).
export async function openReply(code, reply, user, device, spki) {
  if (reply.length < 33) throw new DeviceError("approval: the reply is too short");
  const mac = reply.slice(0, 32);
  const body = reply.slice(32);
  if (!equalBytes(await hmac(code, concat(utf8(APPROVED_DOMAIN), body)), mac)) {
    throw new DeviceError("approval: the reply was not made with this device's code");
  }
  let out;
  let forThis;
  try {
    const obj = JSON.parse(fromUtf8(body));
    out = {
      ik: unb64(obj.identityKey),
      list: {
        text: unb64(obj.list.text), signature: unb64(obj.list.signature),
        devices: obj.list.devices.map((d) => ({ id: d.id, spki: unb64(d.publicKey) })),
      },
      pins: Object.entries(obj.pins).map(([name, key]) => ({ user: name, spki: unb64(key) })),
    };
    forThis = equalBytes(folded(obj.user), folded(user)) && obj.device === device && equalBytes(unb64(obj.deviceKey), spki);
  } catch (e) {
    throw new DeviceError("approval: the reply does not hold a valid approval");
  }
  if (!forThis) throw new DeviceError("approval: the reply approves another device");
  return out;
}

// -- recovery -----------------------------------------------------------------

async function recoveryKey(code, usage) {
  const base = await subtle.importKey("raw", secretOf(code, RECOVERY_CHARS), "HKDF", false, ["deriveKey"]);
  return subtle.deriveKey({ name: "HKDF", hash: "SHA-256", salt: new Uint8Array(0), info: utf8(RECOVERY_INFO) },
    base, { name: "AES-GCM", length: 256 }, false, [usage]);
}

function recoveryAad(user) {
  return concat(utf8(`${RECOVERY_INFO}\0`), folded(user));
}

// `user`'s identity key (PKCS#8) sealed under the recovery code: a 12-byte
// nonce, then AES-256-GCM under HKDF-SHA256 of the code, bound to the user.
export async function sealRecovery(code, user, pkcs8) {
  const nonce = randomBytes(12);
  const key = await recoveryKey(code, "encrypt");
  const sealed = await subtle.encrypt({ name: "AES-GCM", iv: nonce, additionalData: recoveryAad(user) }, key, pkcs8);
  return concat(nonce, new Uint8Array(sealed));
}

// The PKCS#8 a recovery blob seals; throws DeviceError for a wrong code (or
// another account's blob).
export async function openRecovery(code, user, blob) {
  if (blob.length < 12 + 16) throw new DeviceError("recovery: no sealed key");
  const key = await recoveryKey(code, "decrypt");
  try {
    return new Uint8Array(await subtle.decrypt(
      { name: "AES-GCM", iv: blob.slice(0, 12), additionalData: recoveryAad(user) }, key, blob.slice(12)));
  } catch (e) {
    throw new DeviceError("recovery: this code does not open this account's key");
  }
}
