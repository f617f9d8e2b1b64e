// chatd's end-to-end envelope in WebCrypto (docs/protocol.rst, envelope and
// files). It must agree byte for byte with chatd/e2e.py: a browser opens what
// the Python clients seal and the other way round.
//
// Nothing here touches the page or the network, so it runs in Node too (the
// interoperability check drives it from there).

const subtle = globalThis.crypto.subtle;

export const MESSAGE = "chatd-e2e-v1";
export const MESSAGE_V2 = "chatd-e2e-v2";
export const FILE = "chatd-file-v1";
export const ALG = "RSA-OAEP-256/A256GCM/PS256";
const AUTH_PREFIX_V2 = "chatd-auth-v2\0";
const COMMIT = "chatd-commit-v1";
const CHUNK = "chatd-chunk-v1\n";

const FIELDS = [
  "v", "alg", "id", "from", "to", "ts", "nonce", "kc",
  "encrypted_message", "encrypted_keys", "key_ids", "signature",
];
// Version 2 (devices) adds the sending device, the sender's list head and the
// room's history setting, all signed.
const FIELDS_V2 = [...FIELDS, "dev", "head", "hist"];
const DEVICE_RE = /^[A-Za-z0-9_.-]{1,32}$/;
const HEAD_HASH_RE = /^[0-9a-f]{64}$/;
export const MAX_HISTORY = 500;
// The same canonical spellings chatd/e2e.py insists on.
const ID_RE = /^[A-Za-z0-9_-]{21}[AQgw]$/;
const NONCE_RE = /^[A-Za-z0-9+/]{16}$/;
const KC_RE = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;
const B64_RE = /^[A-Za-z0-9+/]*={0,2}$/;
const KEY_ID_RE = /^[0-9a-f]{16}$/;
const NOT_IN_HEADER_RE = /[\n\ud800-\udfff]/;

const PSS = { name: "RSA-PSS", saltLength: 32 };
const OAEP = { name: "RSA-OAEP" };

// `reason`: why an envelope is refused, in the words of the shared client
// test vectors (chatd/test/vectors/clients.json): malformed, not-for-me,
// unwrap, commitment, ciphertext, signature.
export class EnvelopeError extends Error {
  constructor(message, reason = "malformed") {
    super(message);
    this.reason = reason;
  }
}

// -- bytes and text ---------------------------------------------------------

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true });

export function utf8(text) {
  return encoder.encode(text);
}

export function fromUtf8(bytes) {
  return strictDecoder.decode(bytes);
}

export function concat(...parts) {
  let length = 0;
  for (const part of parts) length += part.length;
  const out = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function bytesOf(data) {
  return data instanceof Uint8Array ? data : new Uint8Array(data);
}

export function equalBytes(a, b) {
  a = bytesOf(a);
  b = bytesOf(b);
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64_VALUES = new Map([...B64].map((c, i) => [c, i]));

// Standard base64 with padding: the spelling of every field but `id`.
export function b64(data) {
  const bytes = bytesOf(data);
  let out = "";
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    out += B64[n >> 18] + B64[(n >> 12) & 63] + B64[(n >> 6) & 63] + B64[n & 63];
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = bytes[i] << 16;
    out += B64[n >> 18] + B64[(n >> 12) & 63] + "==";
  } else if (rest === 2) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8);
    out += B64[n >> 18] + B64[(n >> 12) & 63] + B64[(n >> 6) & 63] + "=";
  }
  return out;
}

// Decode standard base64; padding may be left off (a 12-byte nonce has none).
export function unb64(text) {
  if (typeof text !== "string" || !B64_RE.test(text)) {
    throw new EnvelopeError("not base64");
  }
  const body = text.replace(/=+$/, "");
  if (body.length % 4 === 1 || (text.length !== body.length && text.length % 4 !== 0)) {
    throw new EnvelopeError("not base64");
  }
  const out = new Uint8Array(Math.floor((body.length * 3) / 4));
  let bits = 0;
  let value = 0;
  let at = 0;
  for (const c of body) {
    value = (value << 6) | B64_VALUES.get(c);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[at++] = (value >> bits) & 0xff;
    }
  }
  return out;
}

// The unpadded base64url spelling envelope ids use.
export function b64url(data) {
  return b64(data).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function hex(data) {
  return Array.from(bytesOf(data), (b) => b.toString(16).padStart(2, "0")).join("");
}

export function randomBytes(n) {
  return globalThis.crypto.getRandomValues(new Uint8Array(n));
}

export async function sha256(data) {
  return new Uint8Array(await subtle.digest("SHA-256", bytesOf(data)));
}

// -- keys -----------------------------------------------------------------

export function derToPem(der) {
  const body = b64(der).replace(/(.{64})/g, "$1\n").replace(/\n$/, "");
  return `-----BEGIN PUBLIC KEY-----\n${body}\n-----END PUBLIC KEY-----\n`;
}

export function pemToDer(pem) {
  if (typeof pem !== "string") throw new EnvelopeError("public key: not PEM text");
  const match = /-----BEGIN PUBLIC KEY-----([A-Za-z0-9+/=\s]+)-----END PUBLIC KEY-----/.exec(pem);
  if (!match) throw new EnvelopeError("public key: not a PEM SubjectPublicKeyInfo");
  return unb64(match[1].replace(/\s+/g, ""));
}

// The 16 hex digits that name a key in `key_ids`.
export async function keyId(spki) {
  return hex(await sha256(spki)).slice(0, 16);
}

// The whole SHA-256 of a key in groups of four, as chatd.e2e.fingerprint spells it.
export async function fingerprint(spki) {
  const digest = hex(await sha256(spki));
  return digest.match(/.{4}/g).join(" ");
}

const publicKeys = new Map();

// The RSA-OAEP and RSA-PSS CryptoKeys of one SPKI, imported once per key.
async function publicKeysOf(spki) {
  const name = hex(await sha256(spki));
  let keys = publicKeys.get(name);
  if (!keys) {
    keys = Promise.all([
      subtle.importKey("spki", bytesOf(spki), { name: "RSA-OAEP", hash: "SHA-256" }, false, ["encrypt"]),
      subtle.importKey("spki", bytesOf(spki), { name: "RSA-PSS", hash: "SHA-256" }, false, ["verify"]),
    ]).then(([oaep, pss]) => ({ oaep, pss }));
    keys.catch(() => publicKeys.delete(name));
    publicKeys.set(name, keys);
  }
  return keys;
}

// Whether `spki` is an RSA public key WebCrypto will use; never throws.
export async function isUsableKey(spki) {
  try {
    await publicKeysOf(spki);
    return true;
  } catch (e) {
    return false;
  }
}

// A new identity: one RSA-3072 key used for both RSA-OAEP and RSA-PSS, as the
// envelope requires. The key is generated extractable only long enough to read
// it out once; what is kept are two non-extractable private CryptoKeys (one per
// algorithm, from the same PKCS#8) and the public SPKI.
//
// `withPkcs8(pkcs8)`, when given, is the one chance to use the private key's
// bytes (to seal it under a recovery code) before they are wiped.
export async function generateIdentity(withPkcs8 = null) {
  const pair = await subtle.generateKey(
    { name: "RSA-OAEP", modulusLength: 3072, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" },
    true,
    ["encrypt", "decrypt"],
  );
  const spki = new Uint8Array(await subtle.exportKey("spki", pair.publicKey));
  let pkcs8 = new Uint8Array(await subtle.exportKey("pkcs8", pair.privateKey));
  try {
    const oaep = await subtle.importKey("pkcs8", pkcs8, { name: "RSA-OAEP", hash: "SHA-256" }, false, ["decrypt"]);
    const pss = await subtle.importKey("pkcs8", pkcs8, { name: "RSA-PSS", hash: "SHA-256" }, false, ["sign"]);
    const extra = withPkcs8 ? await withPkcs8(pkcs8) : undefined;
    return { spki, oaep, pss, extra };
  } finally {
    pkcs8.fill(0);
    pkcs8 = null;
  }
}

// -- login ----------------------------------------------------------------

// A device's challenge-response: it names the device it signs for (the page
// always signs in as a device).
export function deviceAuthMessage(challenge, user, device) {
  return concat(utf8(AUTH_PREFIX_V2), bytesOf(challenge), utf8(`${user}\n${device}`));
}

export async function signDeviceAuth(pssKey, challenge, user, device) {
  return new Uint8Array(await subtle.sign(PSS, pssKey, deviceAuthMessage(challenge, user, device)));
}

// The two private CryptoKeys of a PKCS#8 RSA key (a recovered identity key).
export async function importPrivate(pkcs8) {
  const oaep = await subtle.importKey("pkcs8", pkcs8, { name: "RSA-OAEP", hash: "SHA-256" }, false, ["decrypt"]);
  const pss = await subtle.importKey("pkcs8", pkcs8, { name: "RSA-PSS", hash: "SHA-256" }, false, ["sign"]);
  return { oaep, pss };
}

// -- envelopes --------------------------------------------------------------

// The header: the AES-GCM associated data and the start of the signed bytes.
// A version 2 envelope's domain is the version 2 spelling of `domain`, and its
// header goes on with the device, the head and the history setting.
export function header(domain, env) {
  const [[kind, name]] = Object.entries(env.to);
  const v2 = env.v === 2;
  let text = `${v2 ? domainV2(domain) : domain}\n${env.alg}\n${env.from}\n${kind}:${name}\n${env.id}\n${env.ts}\n${env.nonce}\n${env.kc}\n`;
  if (v2) text += `${env.dev}\n${env.head ? env.head.v : 0}\n${env.head ? env.head.h : ""}\n${env.hist}\n`;
  return utf8(text);
}

function domainV2(domain) {
  return domain.replace(/-v1$/, "-v2");
}

async function commit(key) {
  const hmacKey = await subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await subtle.sign("HMAC", hmacKey, utf8(COMMIT)));
}

function isPlainObject(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isHeaderText(value) {
  return typeof value === "string" && value !== "" && !NOT_IN_HEADER_RE.test(value);
}

function isBase64(value) {
  return typeof value === "string" && value !== "" && value.length % 4 === 0 && B64_RE.test(value);
}

function need(ok, field, what) {
  if (!ok) throw new EnvelopeError(`envelope: ${field} must be ${what}`);
}

// Check an envelope's shape as strictly as chatd/e2e.py's Envelope.parse does;
// nothing in it is trusted yet.
export function checkEnvelope(env) {
  if (!isPlainObject(env)) throw new EnvelopeError("envelope: not a JSON object");
  const fields = env.v === 2 ? FIELDS_V2 : FIELDS;
  for (const field of Object.keys(env)) {
    if (!fields.includes(field)) throw new EnvelopeError(`envelope: unknown field ${JSON.stringify(field.slice(0, 40))}`);
  }
  for (const field of fields) {
    if (!(field in env)) throw new EnvelopeError(`envelope: missing field '${field}'`);
  }
  need(env.v === 1 || env.v === 2, "v", "1 or 2");
  if (env.v === 2) {
    need(env.dev === "" || (typeof env.dev === "string" && DEVICE_RE.test(env.dev)), "dev", "a device id or \"\"");
    need(env.head === null || (isPlainObject(env.head) && Object.keys(env.head).length === 2
      && Number.isSafeInteger(env.head.v) && env.head.v >= 1 && HEAD_HASH_RE.test(env.head.h)),
    "head", '{"v": version, "h": hex hash} or null');
    need((env.dev === "") === (env.head === null), "head", "null exactly when dev is empty");
    need(Number.isSafeInteger(env.hist) && env.hist >= 0 && env.hist <= MAX_HISTORY, "hist", "0 to 500");
  }
  need(env.alg === ALG, "alg", ALG);
  need(typeof env.id === "string" && ID_RE.test(env.id), "id", "16 bytes of unpadded base64url");
  need(isHeaderText(env.from), "from", "a non-empty one-line string");
  const to = env.to;
  const toKeys = isPlainObject(to) ? Object.keys(to) : [];
  need(toKeys.length === 1 && (toKeys[0] === "room" || toKeys[0] === "user") && isHeaderText(to[toKeys[0]]),
    "to", '{"room": name} or {"user": name}');
  need(Number.isSafeInteger(env.ts) && env.ts >= 0, "ts", "a non-negative integer");
  need(typeof env.nonce === "string" && NONCE_RE.test(env.nonce), "nonce", "12 bytes of base64");
  need(typeof env.kc === "string" && KC_RE.test(env.kc), "kc", "32 bytes of base64");
  need(isBase64(env.encrypted_message), "encrypted_message", "non-empty base64");
  need(isPlainObject(env.encrypted_keys) && Object.values(env.encrypted_keys).every(isBase64),
    "encrypted_keys", "an object of non-empty base64");
  need(isPlainObject(env.key_ids) && Object.values(env.key_ids).every((v) => typeof v === "string" && KEY_ID_RE.test(v)),
    "key_ids", "an object of 16 lowercase hex digits");
  need(isBase64(env.signature), "signature", "non-empty base64");
  return env;
}

// Encrypt `plaintext` (bytes) for `recipients` (a Map or object of name to SPKI
// DER; include the sender to read it back) and sign it with `signingKey` (an
// RSA-PSS private CryptoKey). `to` is ["room", name] or ["user", name].
// `device`, when given, makes a version 2 envelope: { dev, head, hist }, with
// `recipients` named by entry key (entryKey).
export async function seal({ from, signingKey, to, recipients, plaintext, domain = MESSAGE, ts, id, device }) {
  const [toKind, toName] = to;
  const key = randomBytes(32);
  try {
    const env = {
      v: device ? 2 : 1,
      alg: ALG,
      id: id ?? b64url(randomBytes(16)),
      from,
      to: { [toKind]: toName },
      ts: ts ?? Date.now(),
      nonce: b64(randomBytes(12)),
      kc: b64(await commit(key)),
    };
    if (device) Object.assign(env, { dev: device.dev, head: device.head, hist: device.hist });
    const head = header(domain, env);
    const aesKey = await subtle.importKey("raw", key, "AES-GCM", false, ["encrypt"]);
    const ciphertext = await subtle.encrypt(
      { name: "AES-GCM", iv: unb64(env.nonce), additionalData: head }, aesKey, bytesOf(plaintext));
    env.encrypted_message = b64(new Uint8Array(ciphertext));
    const signature = await subtle.sign(PSS, signingKey, concat(head, utf8(env.encrypted_message)));
    Object.assign(env, await wrapKey(key, recipients));
    env.signature = b64(new Uint8Array(signature));
    return env;
  } finally {
    key.fill(0);
  }
}

// `key` wrapped for each of `recipients` (a Map or object of entry key to
// SPKI DER): { encrypted_keys, key_ids }.
export async function wrapKey(key, recipients) {
  const entries = recipients instanceof Map ? [...recipients] : Object.entries(recipients);
  const out = { encrypted_keys: {}, key_ids: {} };
  for (const [name, spki] of entries) {
    const { oaep } = await publicKeysOf(spki);
    out.encrypted_keys[name] = b64(new Uint8Array(await subtle.encrypt(OAEP, oaep, key)));
    out.key_ids[name] = await keyId(spki);
  }
  return out;
}

// The message key of `env` from `readerName`'s entry, its commitment checked.
export async function unwrapKey(env, readerName, oaepPrivateKey) {
  const wrapped = env.encrypted_keys[readerName];
  if (wrapped === undefined || !Object.prototype.hasOwnProperty.call(env.encrypted_keys, readerName)) {
    throw new EnvelopeError("envelope: no key for you", "not-for-me");
  }
  let key;
  try {
    key = new Uint8Array(await subtle.decrypt(OAEP, oaepPrivateKey, unb64(wrapped)));
  } catch (e) {
    throw new EnvelopeError("envelope: your key entry does not unwrap", "unwrap");
  }
  if (key.length !== 32 || !equalBytes(await commit(key), unb64(env.kc))) {
    key.fill(0);
    throw new EnvelopeError("envelope: key commitment does not match", "commitment");
  }
  return key;
}

// Unwrap, check the key commitment and decrypt. The signature is checked
// separately, and first (verifySignature): nothing a key we do not trust
// signed is opened.
export async function decrypt(env, readerName, oaepPrivateKey, domain = MESSAGE) {
  checkEnvelope(env);
  const key = await unwrapKey(env, readerName, oaepPrivateKey);
  try {
    const aesKey = await subtle.importKey("raw", key, "AES-GCM", false, ["decrypt"]);
    try {
      const plaintext = await subtle.decrypt(
        { name: "AES-GCM", iv: unb64(env.nonce), additionalData: header(domain, env) },
        aesKey, unb64(env.encrypted_message));
      return new Uint8Array(plaintext);
    } catch (e) {
      throw new EnvelopeError("envelope: message does not decrypt", "ciphertext");
    }
  } finally {
    key.fill(0);
  }
}

// Whether the sender's key `spki` signed `env`; never throws.
export async function verifySignature(env, spki, domain = MESSAGE) {
  try {
    checkEnvelope(env);
    const { pss } = await publicKeysOf(spki);
    const signed = concat(header(domain, env), utf8(env.encrypted_message));
    return await subtle.verify(PSS, pss, unb64(env.signature), signed);
  } catch (e) {
    return false;
  }
}


// -- file chunks ------------------------------------------------------------

export function chunkNonce(index) {
  const nonce = new Uint8Array(12);
  new DataView(nonce.buffer).setBigUint64(4, BigInt(index), false);
  return nonce;
}

export function chunkAad(envelopeId, index) {
  return utf8(`${CHUNK}${envelopeId}\n${index}`);
}

export async function importFileKey(raw) {
  if (bytesOf(raw).length !== 32) throw new EnvelopeError("file: the file key is not 32 bytes");
  return subtle.importKey("raw", bytesOf(raw), "AES-GCM", false, ["encrypt", "decrypt"]);
}

export async function sealChunk(fileKey, envelopeId, index, data) {
  const out = await subtle.encrypt(
    { name: "AES-GCM", iv: chunkNonce(index), additionalData: chunkAad(envelopeId, index) },
    fileKey, bytesOf(data));
  return new Uint8Array(out);
}

export async function openChunk(fileKey, envelopeId, index, ciphertext) {
  try {
    const out = await subtle.decrypt(
      { name: "AES-GCM", iv: chunkNonce(index), additionalData: chunkAad(envelopeId, index) },
      fileKey, bytesOf(ciphertext));
    return new Uint8Array(out);
  } catch (e) {
    throw new EnvelopeError(`file: chunk ${index} does not decrypt`);
  }
}
