// Rooms and direct conversations: which exist, who is in them (the server's
// member lists), what they show, and which one is open.

import * as e2e from "./crypto.js";
import * as store from "./store.js";
import { ServerError } from "./connection.js";
import { $, describeError, toast } from "./dom.js";
import { renderAlerts } from "./keychange.js";
import { loadHistory } from "./messaging.js";
import { notifyItem } from "./notify.js";
import { renderComposer, renderHeader, renderMembers, renderMessages, renderSidebar } from "./render.js";
import { Conversation, fingerprintOf, fold, state } from "./state.js";
import { observeMember } from "./devicetrust.js";
import { checkOwnKey } from "./trust.js";

export function dmWith(name) {
  const key = fold(name);
  let conv = state.dms.get(key);
  if (!conv) {
    conv = new Conversation("dm", name);
    state.dms.set(key, conv);
    renderSidebar();
  }
  return conv;
}

export function addRoom(name) {
  const key = fold(name);
  let room = state.rooms.get(key);
  if (!room) {
    room = new Conversation("room", name);
    state.rooms.set(key, room);
    store.rememberRoom(state.me, name).catch(() => {});
    renderSidebar();
  } else if (room.name !== name) {
    room.name = name;
  }
  return room;
}

export function removeRoom(room, why) {
  state.rooms.delete(room.key);
  store.forgetRoom(state.me, room.name).catch(() => {});
  if (state.active === room) {
    const next = state.rooms.values().next().value || state.dms.values().next().value || null;
    select(next);
  }
  renderSidebar();
  if (why) toast(why);
}

export async function setMembers(room, members, announce) {
  for (const m of members) checkOwnKey(m.userId, e2e.pemToDer(m.publicKey));
  const before = new Map(room.members);
  const now = new Map();
  for (const m of members) {
    const own = fold(m.userId) === fold(state.me);
    const spki = own && state.identity ? state.identity.spki : e2e.pemToDer(m.publicKey);
    now.set(fold(m.userId), { name: m.userId, spki, fp: await fingerprintOf(spki), guest: m.guest === true, list: m.devices });
  }
  room.members = now;
  for (const m of now.values()) await observeMember(m.name, m.spki, m.guest, m.list);
  if (announce) {
    for (const [key, m] of now) if (!before.has(key)) systemNote(room, `${m.name} is a member now (the server's list).`);
    for (const [key, m] of before) if (!now.has(key)) systemNote(room, `${m.name} is no longer a member (the server's list).`);
  }
  if (state.active === room) {
    renderHeader();
    renderMembers();
  }
}

export function addItem(conv, item) {
  conv.items.push(item);
  // Keep the list in time order; history arrives after newer live messages.
  let i = conv.items.length - 1;
  while (i > 0 && conv.items[i - 1].time > item.time) {
    conv.items[i] = conv.items[i - 1];
    i--;
  }
  conv.items[i] = item;
  const news = item.type !== "system" && !item.history && fold(item.from || "") !== fold(state.me);
  if (state.active === conv) {
    renderMessages();
  } else if (news) {
    conv.unread++;
    renderSidebar();
  }
  if (news) notifyItem(conv, item, () => select(conv));
}

export function systemNote(conv, text, bad = false) {
  addItem(conv, { type: "system", time: Date.now(), text, bad });
}

export function select(conv) {
  state.active = conv;
  if (conv) conv.unread = 0;
  renderSidebar();
  renderHeader();
  renderMessages(true);
  renderMembers();
  renderAlerts();
  renderComposer();
  if (conv && conv.historyState === "none") loadHistory(conv);
  if (conv && conv.kind === "dm" && !conv.peerSpki) refreshPeerKey(conv).catch(() => {});
  if (conv) $("composer-input").focus();
}

export async function refreshPeerKey(conv) {
  const reply = await state.conn.request("get_keys", { userId: conv.name });
  const entry = reply.members.find((m) => fold(m.userId) === conv.key);
  if (!entry) throw new Error(`no key for ${conv.name}`);
  checkOwnKey(entry.userId, e2e.pemToDer(entry.publicKey));
  conv.name = entry.userId;
  conv.peerSpki = e2e.pemToDer(entry.publicKey);
  conv.peerFp = await fingerprintOf(conv.peerSpki);
  await observeMember(entry.userId, conv.peerSpki, entry.guest === true, entry.devices);
  if (state.active === conv) {
    renderHeader();
    renderMembers();
    renderComposer();
  }
  renderSidebar();
}

// Fetch a room's members (and its history, the first time).
export async function refreshRoom(room, history = true) {
  try {
    const reply = await state.conn.request("get_keys", { roomId: room.name });
    await setMembers(room, reply.members, false);
  } catch (e) {
    systemNote(room, `Members could not be loaded: ${describeError(e)}`, true);
  }
  if (history && state.active === room && room.historyState === "none") loadHistory(room);
  if (!state.active) select(room);
}

// history: the setting of a room this join creates (how many of its latest
// messages new members may read); the server ignores it for an existing room.
// rejoin: a room this browser was in before (not a new membership).
export async function joinRoom(name, password, switchFrom = null, { history = 0, rejoin = false } = {}) {
  const fields = {};
  if (name !== null) fields.roomId = name;
  if (password) fields.password = password;
  if (history > 0) fields.history = history;
  let reply;
  try {
    reply = await state.conn.request(switchFrom ? "switch_room" : "join", fields);
  } catch (e) {
    if (e instanceof ServerError && e.code === "conflict" && /already/i.test(e.message)) {
      const known = name !== null && state.rooms.get(fold(name));
      if (known) {
        select(known);
        return known;
      }
      const room = addRoom(name ?? state.me);
      await refreshRoom(room);
      select(room);
      return room;
    }
    throw e;
  }
  const room = addRoom(reply.roomId);
  // What the room said before we joined can only reach us shared (sharing.js).
  if (!rejoin) room.joinedAt = Date.now();
  room.password = password || "";
  room.topic = reply.topic || "";
  room.historySetting = Number.isSafeInteger(reply.history) ? reply.history : 0;
  if (room.topic) systemNote(room, `Topic: ${room.topic}`);
  await setMembers(room, reply.members, false);
  if (room.historySetting > 0) {
    // Members' devices share the keys of the latest messages with us in a
    // moment (sharing.js): look at the history again then.
    setTimeout(() => {
      if (!state.rooms.has(room.key) || room.historyState === "loading") return;
      room.historyState = "none";
      if (state.active === room) loadHistory(room);
    }, 3000);
  }
  if (switchFrom && fold(switchFrom.name) !== room.key) {
    removeRoom(switchFrom);
  }
  select(room);
  return room;
}

export async function leaveRoom() {
  const room = state.active;
  if (!room || room.kind !== "room") return;
  try {
    await state.conn.request("leave", { roomId: room.name });
    removeRoom(room, `You left ${room.name}`);
  } catch (e) {
    toast(describeError(e), "error");
  }
}

export async function openDm(name) {
  const existing = state.dms.get(fold(name));
  const conv = existing || new Conversation("dm", name);
  if (!existing) await refreshPeerKey(conv);
  state.dms.set(conv.key, conv);
  select(conv);
  return conv;
}
