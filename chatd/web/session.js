// Signing in and out, and staying connected: the WebSocket, registration,
// password or key sign-in, and reconnecting with the same key afterwards.

import * as e2e from "./crypto.js";
import * as store from "./store.js";
import { Connection, Disconnected, ServerError } from "./connection.js";
import { joinRoom, refreshPeerKey, refreshRoom, removeRoom, select, setMembers } from "./conversations.js";
import { $, avatar, describeError, toast } from "./dom.js";
import { holdEvents, queueEvent } from "./events.js";
import { transfers } from "./filecards.js";
import { loadHistory } from "./messaging.js";
import { renderAll, renderSelfKey } from "./render.js";
import { SeenEnvelopes } from "./replay.js";
import { fingerprintOf, fold, state, USER_RE } from "./state.js";
import { newOwnKey } from "./trust.js";

export function wsUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}

export function setConnStatus(text, cls) {
  const node = $("conn-status");
  node.textContent = text;
  node.className = `conn-status ${cls}`;
}

export async function connect() {
  const conn = new Connection(wsUrl(), { onEvent: queueEvent, onClose: () => onDisconnect(conn) });
  setConnStatus("connecting", "connecting");
  await conn.open();
  state.conn = conn;
  setConnStatus("online", "online");
  return conn;
}

export function loginStatus(text, error = false) {
  $("login-status").textContent = text;
  $("login-status").className = error ? "status error" : "status";
}

// Prove who we are with this browser's key: sign the server's challenge.
export async function authenticateWithKey(name, identity) {
  const { challenge } = await state.conn.request("get_challenge");
  const signature = await e2e.signAuth(identity.pss, e2e.unb64(challenge), name);
  return state.conn.request("authenticate", { userId: name, signature: e2e.b64(signature) });
}

export async function signIn(mode) {
  const name = $("login-user").value.trim();
  const password = $("login-pass").value;
  if (!USER_RE.test(name)) return loginStatus("User names are 1–32 of A–Z a–z 0–9 _ . -", true);
  if (password && new TextEncoder().encode(password).length < 8) return loginStatus("Passwords are at least 8 bytes (or leave it empty).", true);
  for (const button of [$("btn-login"), $("btn-register")]) button.disabled = true;
  let release = null;
  let replaced = null;
  try {
    if (!state.conn || !state.conn.isOpen) {
      loginStatus("Connecting…");
      await connect();
    }
    release = holdEvents();
    state.signedOut = false;
    let identity = await store.loadIdentity(name);
    let reply;
    if (mode === "register") {
      let fresh = false;
      if (!identity) {
        loginStatus("Making your key (RSA-3072)…");
        identity = await e2e.generateIdentity();
        fresh = true;
      }
      loginStatus("Creating your account…");
      const fields = { userId: name, publicKey: e2e.derToPem(identity.spki) };
      if (password) fields.password = password;
      const invite = $("login-invite").value.trim();
      if (invite) fields.invite = invite;
      reply = await state.conn.request("register", fields);
      if (fresh) await store.saveIdentity(reply.userId, identity);
    } else if (password) {
      loginStatus("Signing in…");
      reply = await state.conn.request("login", { userId: name, password });
    } else {
      if (!identity) throw new Error(`This browser has no key for ${name}. Enter your password, or create an account.`);
      loginStatus("Signing in with this browser's key…");
      reply = await authenticateWithKey(name, identity);
    }
    state.me = reply.userId;
    const keys = await state.conn.request("get_keys", { userId: state.me });
    const serverSpki = e2e.pemToDer(keys.members[0].publicKey);
    if (!identity) {
      // A password sign-in on a browser that has never seen this account: it
      // makes its own key and publishes it (contacts are warned of the change).
      // The events held meanwhile still name the key it replaces.
      loginStatus("Making a key for this browser (RSA-3072)…");
      identity = await e2e.generateIdentity();
      state.ownKey.setAside();
      replaced = serverSpki;
      await state.conn.request("set_key", { publicKey: e2e.derToPem(identity.spki) });
      await store.saveIdentity(state.me, identity);
      toast("This browser made a new key for your account; your contacts will see that it changed.");
    }
    state.identity = identity;
    state.ownKey.check(serverSpki, identity.spki);
    await state.replay.attach(state.me);
    $("login-pass").value = "";
    $("login-invite").value = "";
    await enterApp();
  } catch (e) {
    state.me = null;
    loginStatus(describeError(e), true);
    if (e instanceof Disconnected) state.conn = null;
  } finally {
    release?.();
    if (replaced) state.events = state.events.then(() => state.ownKey.resume(replaced));
    for (const button of [$("btn-login"), $("btn-register")]) button.disabled = false;
  }
}

export async function enterApp() {
  const pins = await store.loadPins(state.me);
  for (const [key, pin] of pins) {
    pin.fp = await fingerprintOf(pin.spki);
    state.pins.set(key, pin);
  }
  $("me-name").textContent = state.me;
  $("me-avatar").replaceWith(Object.assign(avatar(state.me), { id: "me-avatar" }));
  $("login-screen").classList.add("hidden");
  $("app-screen").classList.remove("hidden");
  renderSelfKey();
  // Rooms this browser was in before, which the server may not have kept.
  for (const name of await store.loadRooms(state.me)) {
    if (state.rooms.has(fold(name))) continue;
    try {
      await joinRoom(name, "");
    } catch (e) {
      store.forgetRoom(state.me, name).catch(() => {});
      toast(`Could not rejoin ${name}: ${describeError(e)}`, "error");
    }
  }
  renderAll();
  if (!state.active) {
    const first = state.rooms.values().next().value;
    if (first) select(first);
  }
}

export function onDisconnect(conn) {
  if (state.conn !== conn) return;
  setConnStatus("offline", "");
  if (state.signedOut || !state.me) {
    state.conn = null;
    return;
  }
  reconnect();
}

export async function reconnect() {
  if (state.reconnecting) return;
  state.reconnecting = true;
  let delay = 1000;
  let release = null;
  for (let attempt = 0; attempt < 60 && !state.signedOut; attempt++) {
    setConnStatus(`reconnecting…`, "connecting");
    await new Promise((r) => setTimeout(r, delay));
    try {
      await connect();
      release = holdEvents();
      const reply = await authenticateWithKey(state.me, state.identity);
      state.me = reply.userId;
      for (const room of [...state.rooms.values()]) {
        try {
          const joined = await state.conn.request("join", { roomId: room.name, ...(room.password ? { password: room.password } : {}) });
          await setMembers(room, joined.members, true);
        } catch (e) {
          if (e instanceof ServerError && e.code === "conflict") await refreshRoom(room, false);
          else {
            removeRoom(room, `Could not rejoin ${room.name}: ${describeError(e)}`);
            continue;
          }
        }
        // Catch up on what was said meanwhile; ids already seen are skipped.
        room.historyState = "none";
        if (state.active === room) loadHistory(room);
      }
      for (const dm of state.dms.values()) dm.peerSpki && refreshPeerKey(dm).catch(() => {});
      toast("Reconnected");
      state.reconnecting = false;
      release();
      return;
    } catch (e) {
      release?.();
      release = null;
      console.warn("chatd: reconnecting", e);
      if (e instanceof ServerError && (e.code === "forbidden" || e.code === "not_found")) break;
      if (state.conn) state.conn.close();
      delay = Math.min(delay * 2, 30000);
    }
  }
  state.reconnecting = false;
  if (!state.signedOut) {
    toast("Could not reconnect. Sign in again.", "error");
    signOut();
  }
}

export function signOut() {
  state.signedOut = true;
  const conn = state.conn;
  state.conn = null;
  conn?.close();
  for (const t of transfers.byId.values()) if (t.url) URL.revokeObjectURL(t.url);
  Object.assign(state, {
    me: null, identity: null, active: null, held: [], ownKey: newOwnKey(),
  });
  state.pins.clear();
  state.alerts.clear();
  state.guests.clear();
  state.rooms.clear();
  state.dms.clear();
  state.replay = new SeenEnvelopes();
  state.shown.clear();
  transfers.byId.clear();
  $("app-screen").classList.add("hidden");
  $("login-screen").classList.remove("hidden");
  loginStatus("");
  document.title = "chatd";
  $("login-user").focus();
}
