// What the browser keeps between visits, in IndexedDB:
//
//   identities  one per user name: the public SPKI and two non-extractable
//               private CryptoKeys (RSA-OAEP and RSA-PSS) of the same RSA key
//   pins        per (owner, user): the key first seen for that user (TOFU), and
//               whether the owner has verified it
//   rooms       per (owner, room): the rooms to rejoin after a reconnect
//   seen        per (owner, sender, id): the envelopes the owner has seen, with
//               their signed time and the order they came in (replay.js)
//   horizons    per owner: the highest signed time forgotten from "seen"
//   heads       per (owner, user): the device list head held for that user
//               (version, hash, its key hashes and those a list removed), so
//               that no older list or removed device comes back
//
// An identity record also names this browser's device and, on a device that
// is not the account's first, the account's identity key (its public half).
//
// Names are compared ignoring ASCII case, as the server does, so every key is
// folded.

const DB_NAME = "chatd";
const DB_VERSION = 3;

export function fold(name) {
  return name.replace(/[A-Z]/g, (c) => c.toLowerCase());
}

function promised(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

let opening = null;

function open() {
  if (!opening) {
    opening = new Promise((resolve, reject) => {
      const request = indexedDB.open(DB_NAME, DB_VERSION);
      request.onupgradeneeded = () => {
        const db = request.result;
        if (!db.objectStoreNames.contains("identities")) db.createObjectStore("identities", { keyPath: "key" });
        if (!db.objectStoreNames.contains("pins")) db.createObjectStore("pins", { keyPath: ["owner", "user"] });
        if (!db.objectStoreNames.contains("rooms")) db.createObjectStore("rooms", { keyPath: ["owner", "room"] });
        if (!db.objectStoreNames.contains("seen")) db.createObjectStore("seen", { keyPath: ["owner", "sender", "id"] });
        if (!db.objectStoreNames.contains("horizons")) db.createObjectStore("horizons", { keyPath: "owner" });
        if (!db.objectStoreNames.contains("heads")) db.createObjectStore("heads", { keyPath: ["owner", "user"] });
      };
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
      request.onblocked = () => reject(new Error("the key store is blocked by another tab"));
    });
    opening.catch(() => { opening = null; });
  }
  return opening;
}

async function run(storeName, mode, work) {
  const db = await open();
  const tx = db.transaction(storeName, mode);
  const result = work(tx.objectStore(storeName));
  await new Promise((resolve, reject) => {
    tx.oncomplete = resolve;
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error || new Error("key store transaction aborted"));
  });
  return result instanceof IDBRequest ? result.result : result;
}

// -- identities ---------------------------------------------------------------

export async function loadIdentity(user) {
  const record = await run("identities", "readonly", (s) => s.get(fold(user)));
  if (!record) return null;
  return {
    spki: new Uint8Array(record.spki), oaep: record.oaep, pss: record.pss, created: record.created,
    device: record.device ?? null, ik: record.ik ? new Uint8Array(record.ik) : null,
  };
}

export async function saveIdentity(user, identity) {
  await run("identities", "readwrite", (s) => s.put({
    key: fold(user),
    user,
    spki: identity.spki.slice().buffer,
    oaep: identity.oaep,
    pss: identity.pss,
    created: Date.now(),
    device: identity.device ?? null,
    ik: identity.ik ? identity.ik.slice().buffer : null,
  }));
}

export async function deleteIdentity(user) {
  await run("identities", "readwrite", (s) => s.delete(fold(user)));
}

// -- pins -----------------------------------------------------------------

export async function loadPins(owner) {
  const all = await run("pins", "readonly", (s) => s.getAll(IDBKeyRange.bound([fold(owner), ""], [fold(owner), "\uffff"])));
  const pins = new Map();
  for (const pin of all) {
    pins.set(pin.user, { name: pin.name, spki: new Uint8Array(pin.spki), verified: pin.verified, firstSeen: pin.firstSeen });
  }
  return pins;
}

export async function savePin(owner, name, pin) {
  await run("pins", "readwrite", (s) => s.put({
    owner: fold(owner),
    user: fold(name),
    name,
    spki: pin.spki.slice().buffer,
    verified: pin.verified,
    firstSeen: pin.firstSeen,
  }));
}

// -- device list heads --------------------------------------------------------

export async function loadHead(owner, user) {
  const r = await run("heads", "readonly", (s) => s.get([fold(owner), fold(user)]));
  if (!r) return null;
  return { version: r.version, hash: r.hash, hashes: new Set(r.hashes), removed: new Set(r.removed) };
}

export async function saveHead(owner, user, head) {
  await run("heads", "readwrite", (s) => s.put({
    owner: fold(owner), user: fold(user), version: head.version, hash: head.hash,
    hashes: [...head.hashes], removed: [...head.removed],
  }));
}

export async function deleteHead(owner, user) {
  await run("heads", "readwrite", (s) => s.delete([fold(owner), fold(user)]));
}

// -- rooms ----------------------------------------------------------------

export async function loadRooms(owner) {
  const all = await run("rooms", "readonly", (s) => s.getAll(IDBKeyRange.bound([fold(owner), ""], [fold(owner), "\uffff"])));
  return all.map((r) => r.name);
}

export async function rememberRoom(owner, name) {
  await run("rooms", "readwrite", (s) => s.put({ owner: fold(owner), room: fold(name), name }));
}

export async function forgetRoom(owner, name) {
  await run("rooms", "readwrite", (s) => s.delete([fold(owner), fold(name)]));
}

// -- seen envelopes ---------------------------------------------------------

export async function loadSeen(owner) {
  const db = await open();
  const tx = db.transaction(["seen", "horizons"], "readonly");
  const range = IDBKeyRange.bound([fold(owner), "", ""], [fold(owner), "\uffff", "\uffff"]);
  const [all, horizon] = await Promise.all([
    promised(tx.objectStore("seen").getAll(range)),
    promised(tx.objectStore("horizons").get(fold(owner))),
  ]);
  return {
    entries: all.map((r) => ({ sender: r.sender, id: r.id, ts: r.ts, n: r.n })),
    horizon: horizon ? horizon.horizon : 0,
  };
}

// Add `entry` (unless null), delete the `forgotten` ones and keep the horizon,
// in one transaction.
export async function saveSeen(owner, entry, forgotten, horizon) {
  const db = await open();
  const tx = db.transaction(["seen", "horizons"], "readwrite");
  const seen = tx.objectStore("seen");
  const key = fold(owner);
  if (entry) seen.put({ owner: key, sender: entry.sender, id: entry.id, ts: entry.ts, n: entry.n });
  for (const old of forgotten) seen.delete([key, old.sender, old.id]);
  if (forgotten.length) tx.objectStore("horizons").put({ owner: key, horizon });
  await new Promise((resolve, reject) => {
    tx.oncomplete = resolve;
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error || new Error("key store transaction aborted"));
  });
}
