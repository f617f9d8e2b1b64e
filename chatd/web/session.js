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
import * as device from "./devicesession.js";
import { hidePending, renderDeviceButtons, showRecoveryCode } from "./deviceui.js";
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

export async function signIn(mode) {
  const name = $("login-user").value.trim();
  const password = $("login-pass").value;
  if (!USER_RE.test(name)) return loginStatus("User names are 1–32 of A–Z a–z 0–9 _ . -", true);
  if (password && new TextEncoder().encode(password).length < 8) return loginStatus("Passwords are at least 8 bytes (or leave it empty).", true);
  for (const button of [$("btn-login"), $("btn-register")]) button.disabled = true;
  let release = null;
  try {
    if (!state.conn || !state.conn.isOpen) {
      loginStatus("Connecting…");
      await connect();
    }
    release = holdEvents();
    state.signedOut = false;
    let identity = await store.loadIdentity(name);
    let reply;
    let recovery = null;
    if (mode === "register") {
      loginStatus("Making your identity key (RSA-3072) and creating your account…");
      ({ reply, identity, recovery } = await device.register(name, password, $("login-invite").value.trim()));
    } else if (password) {
      loginStatus(identity ? "Signing in…" : "Making a key for this browser (RSA-3072)…");
      ({ reply, identity } = await device.passwordLogin(name, password, identity));
    } else {
      if (!identity) throw new Error(`This browser has no key for ${name}. Enter your password, or create an account.`);
      loginStatus("Signing in with this browser's key…");
      reply = await device.keyLogin(name, identity);
    }
    state.me = reply.userId || name;
    $("login-pass").value = "";
    $("login-invite").value = "";
    if (reply.state === "pending") {
      // A new device: it waits, and so does whatever the server sends it,
      // until one of the account's devices approves it (deviceui.js).
      state.identity = identity;
      loginStatus("");
      await device.requestApproval(identity, password);
      return;
    }
    await finishSignIn(identity);
    if (recovery) showRecoveryCode(recovery);
  } catch (e) {
    state.me = null;
    state.pending = null;
    loginStatus(describeError(e), true);
    if (e instanceof Disconnected) state.conn = null;
  } finally {
    release?.();
    for (const button of [$("btn-login"), $("btn-register")]) button.disabled = false;
  }
}

// Signed in as an approved device: our identity and list, the envelopes seen
// before, then the page. Until the server says it has caught this device up,
// a message shown before is dropped quietly.
export async function finishSignIn(identity) {
  const keys = await state.conn.request("get_keys", { userId: state.me });
  await device.settle(identity, e2e.pemToDer(keys.members[0].publicKey));
  state.catchingUp = true;
  await state.replay.attach(state.me);
  await enterApp();
}

export async function enterApp() {
  const pins = await store.loadPins(state.me);
  for (const [key, pin] of pins) {
    pin.fp = await fingerprintOf(pin.spki);
    state.pins.set(key, pin);
  }
  $("me-name").textContent = state.me;
  renderDeviceButtons();
  $("me-avatar").replaceWith(Object.assign(avatar(state.me), { id: "me-avatar" }));
  $("login-screen").classList.add("hidden");
  $("app-screen").classList.remove("hidden");
  renderSelfKey();
  // Rooms this browser was in before, which the server may not have kept.
  for (const name of await store.loadRooms(state.me)) {
    if (state.rooms.has(fold(name))) continue;
    try {
      await joinRoom(name, "", null, { rejoin: true });
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
      const reply = await device.keyLogin(state.me, state.identity);
      state.me = reply.userId;
      state.catchingUp = true;
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
    device: null, ikSpki: null, pending: null, catchingUp: false,
  });
  state.deviceLists.clear();
  state.pins.clear();
  state.alerts.clear();
  state.guests.clear();
  state.rooms.clear();
  state.dms.clear();
  state.replay = new SeenEnvelopes();
  state.shown.clear();
  transfers.byId.clear();
  $("app-screen").classList.add("hidden");
  hidePending();
  $("login-screen").classList.remove("hidden");
  loginStatus("");
  document.title = "chatd";
  $("login-user").focus();
}
