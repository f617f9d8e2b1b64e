// The page's one state object and the conversation type: what the other
// modules read and change. Nothing here renders or talks to the server.

import * as e2e from "./crypto.js";
import * as store from "./store.js";
import { SeenEnvelopes } from "./replay.js";

export const fold = store.fold;
export const USER_RE = /^[A-Za-z0-9_.-]{1,32}$/;
export const ROOM_RE = /^#?[A-Za-z0-9_.-]{1,32}$/;

export const state = {
  conn: null,
  me: null, // the server's spelling of our name
  identity: null, // this browser's device key: { spki, oaep, pss, device, ik }
  device: null, // this browser's device id
  ikSpki: null, // the account's identity key (ours, or the one our approval vouched for)
  deviceLists: new Map(), // fold(name) -> { legacy, head, devices: [{ id, spki, hash }] } (devicetrust.js)
  pending: null, // while this browser waits for approval: { code, identity, password, events, approval, listed }
  catchingUp: false, // between a device's sign-in and caught_up: repeats are dropped quietly
  ownKey: null, // an OwnKey (trust.js newOwnKey): what the server says our key is
  pins: new Map(), // fold(name) -> { name, spki, verified, firstSeen, fp }
  alerts: new Map(), // fold(name) -> { name, spki, fp, oldFp }
  guests: new Set(), // fold(name) of users the server last said are guests (never pinned)
  rooms: new Map(), // fold(room) -> conversation
  dms: new Map(), // fold(user) -> conversation
  active: null, // a conversation
  replay: new SeenEnvelopes(), // envelopes seen, kept with the account (replay.js)
  shown: new Map(), // shownKey -> signedDigest (replay.js) of what this page showed, live or from history, or sent
  held: [], // messages waiting for a key change to be trusted
  events: Promise.resolve(), // events are handled one at a time, in order
  incoming: Promise.resolve(), // so are the envelopes they carry
  outgoing: Promise.resolve(), // and the messages we send
  reconnecting: false,
  signedOut: false,
  fingerprints: new Map(),
};

export class Conversation {
  constructor(kind, name) {
    this.kind = kind; // "room" | "dm"
    this.name = name;
    this.items = []; // { type: "msg"|"system"|"file", time, ... }
    this.members = new Map(); // rooms: fold(name) -> { name, spki }
    this.peerSpki = null; // dms
    this.unread = 0;
    this.historyState = "none"; // none | loading | loaded
    this.oldest = null; // server timestamp string of the oldest history row
    this.joinedAt = 0; // when this page joined the room (ms), 0: joined before it
    this.sharesNewer = 0; // shared history rows newer than the page loaded last (sharing.js)
    this.hasOlder = false;
    this.password = "";
    this.topic = ""; // rooms: shown under the name (moderation.js keeps it)
  }

  get key() {
    return fold(this.name);
  }
}

export async function fingerprintOf(spki) {
  const k = e2e.b64(spki);
  let fp = state.fingerprints.get(k);
  if (!fp) {
    fp = await e2e.fingerprint(spki);
    state.fingerprints.set(k, fp);
  }
  return fp;
}

// The key under which an envelope counts as shown.
export function shownKey(env) {
  return `${fold(env.from)}\n${env.id}`;
}
