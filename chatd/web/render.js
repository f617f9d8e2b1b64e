// Drawing the state: the sidebar, the open conversation's header, warnings,
// messages, composer and members. Each function redraws its part from the
// state; none changes the state.

import { openDm, select } from "./conversations.js";
import { openJoin, openVerify } from "./dialogs.js";
import { $, avatar, dayOf, el, fingerprintLines, timeOf } from "./dom.js";
import { fileCard, transfers } from "./filecards.js";
import { focusKeyAlert, renderAlerts } from "./keychange.js";
import { loadHistory, retrySend } from "./messaging.js";
import { fingerprintOf, fold, state } from "./state.js";
import { isIdentityDevice } from "./devicesession.js";
import { publishOwnKey } from "./trust.js";

export function renderAll() {
  renderSidebar();
  renderHeader();
  renderAlerts();
  renderMembers();
  renderComposer();
  renderMessages();
}

export function convHasAlert(conv) {
  if (conv.kind === "dm") return state.alerts.has(conv.key);
  for (const key of conv.members.keys()) if (state.alerts.has(key)) return true;
  return false;
}

export function renderSidebar() {
  const lists = [
    [$("room-list"), [...state.rooms.values()], "No rooms yet"],
    [$("dm-list"), [...state.dms.values()], "No direct messages"],
  ];
  for (const [list, convs, empty] of lists) {
    list.replaceChildren();
    convs.sort((a, b) => a.key.localeCompare(b.key));
    if (!convs.length) list.append(el("li", { class: "empty", text: empty }));
    for (const conv of convs) {
      const classes = [state.active === conv ? "active" : "", conv.unread ? "unread" : ""].join(" ").trim();
      list.append(el("li", { class: classes || null, dataset: { conv: conv.name } },
        el("button", { type: "button", onclick: () => select(conv), title: conv.name },
          conv.kind === "room" ? el("span", { class: "hash", text: "#" }) : avatar(conv.name, true),
          el("span", { class: "conv-name", text: conv.kind === "room" ? conv.name.replace(/^#/, "") : conv.name }),
          convHasAlert(conv) ? el("span", { class: "warn-dot", title: "A key changed", text: "!" }) : null,
          conv.unread ? el("span", { class: "badge", text: conv.unread }) : null)));
    }
  }
  // The total, on the phone's room-list button and in the tab's title.
  let unread = 0;
  for (const conv of [...state.rooms.values(), ...state.dms.values()]) unread += conv.unread;
  $("rooms-unread").textContent = unread ? String(unread) : "";
  if (state.me) document.title = `${unread ? `(${unread}) ` : ""}chatd · ${state.me}`;
}

export function renderHeader() {
  const conv = state.active;
  $("btn-leave").classList.toggle("hidden", !conv || conv.kind !== "room");
  $("btn-members").classList.toggle("hidden", !conv);
  if (!conv) {
    $("chat-name").textContent = "No conversation";
    $("chat-sub").textContent = "";
    return;
  }
  $("chat-name").textContent = conv.kind === "room" ? conv.name : `@${conv.name}`;
  if (conv.kind === "room") {
    const n = conv.members.size;
    const topic = conv.topic ? `${conv.topic} · ` : "";
    $("chat-sub").textContent = `${topic}${n} member${n === 1 ? "" : "s"} · end-to-end encrypted`;
  } else {
    $("chat-sub").textContent = conv.peerFp ? `Direct message · key ${conv.peerFp.split(" ").slice(0, 4).join(" ")} …` : "Direct message · end-to-end encrypted";
  }
}

export async function renderSelfKey() {
  const box = $("self-key-alert");
  const claimed = state.ownKey.conflict;
  box.classList.toggle("hidden", !claimed);
  if (!claimed || !state.identity) return;
  const [ours, theirs] = [await fingerprintOf(state.ikSpki ?? state.identity.spki), await fingerprintOf(claimed)];
  if (state.ownKey.conflict !== claimed) return;
  box.replaceChildren(
    el("h3", { text: `⚠ The server gives another key for you (${state.me})` }),
    el("p", { text: "Either the server is lying, or someone with your password (perhaps you, in another browser or client) changed your key. Whoever holds that key may read what is sent to you. Nothing is sent from this page until you choose to use this browser's key again." }),
    el("p", { text: "Your identity key:" }), el("pre", { class: "fingerprint", text: fingerprintLines(ours) }),
    el("p", { text: "The key the server gives for you:" }), el("pre", { class: "fingerprint", text: fingerprintLines(theirs) }),
    // Only the browser holding the identity key may publish it again.
    isIdentityDevice() ? el("div", { class: "alert-actions" },
      el("button", { type: "button", class: "publish-own-key", onclick: publishOwnKey }, "Use this browser's key for my account")) : null);
}

export function renderComposer() {
  const conv = state.active;
  const input = $("composer-input");
  const blocked = $("composer-blocked");
  $("composer").classList.toggle("hidden", !conv);
  $("btn-file").disabled = !conv || !transfers.supported;
  if (!conv) {
    blocked.classList.add("hidden");
    return;
  }
  const names = (conv.kind === "dm" ? [conv.key] : [...conv.members.keys()])
    .filter((k) => state.alerts.has(k)).map((k) => state.alerts.get(k).name);
  const ownKey = Boolean(state.ownKey.conflict);
  const isBlocked = names.length > 0 || ownKey;
  $("composer-send").disabled = isBlocked;
  input.disabled = isBlocked;
  input.placeholder = isBlocked ? "Sending is blocked until you verify the changed key" : `Message ${conv.kind === "room" ? conv.name : "@" + conv.name}`;
  blocked.classList.toggle("hidden", !isBlocked);
  blocked.textContent = ownKey ? "Sending is blocked: the server gives another key for you. See the warning above."
    : isBlocked ? `Sending is blocked: ${names.join(", ")} changed key. Verify it above to continue.` : "";
}

export function renderMessages(toBottom = false) {
  const box = $("messages");
  const conv = state.active;
  const nearBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  if (!conv) {
    box.replaceChildren($("empty-state") || emptyState());
    $("empty-state").classList.remove("hidden");
    return;
  }
  const nodes = [];
  if (conv.historyState === "loading") nodes.push(el("p", { class: "system", text: "Loading history…" }));
  else if (conv.hasOlder) nodes.push(el("button", { type: "button", class: "load-older ghost", onclick: () => loadHistory(conv, true) }, "Load older messages"));
  let lastDay = null;
  let lastFrom = null;
  let lastTime = 0;
  for (const item of conv.items) {
    const day = dayOf(item.time);
    if (day !== lastDay) {
      nodes.push(el("div", { class: "day" }, el("span", { text: day })));
      lastDay = day;
      lastFrom = null;
    }
    if (item.type === "system") {
      nodes.push(el("p", { class: item.bad ? "system bad" : "system", text: item.text }));
      lastFrom = null;
      continue;
    }
    const cont = item.type === "msg" && lastFrom === fold(item.from) && item.time - lastTime < 5 * 60000;
    lastFrom = item.type === "msg" ? fold(item.from) : null;
    lastTime = item.time;
    const classes = ["message", cont ? "cont" : "", item.pending ? "pending" : "", item.failed ? "failed" : ""].join(" ").replace(/\s+/g, " ").trim();
    const body = el("div", { class: "body" },
      cont ? null : el("div", { class: "meta" },
        el("span", { class: "sender", text: item.from }),
        item.guest ? el("span", { class: "tag guest", title: "No account: anyone may use this name", text: "guest" }) : null,
        el("time", { class: "time", datetime: new Date(item.time).toISOString(), title: new Date(item.time).toLocaleString(), text: timeOf(item.time) })));
    if (item.type === "msg") {
      body.append(el("div", { class: "text", text: item.text },
        item.pending ? el("span", { class: "state", text: item.waiting || "sending…" }) : null,
        item.failed ? el("span", { class: "state", text: item.failed }) : null,
        item.failed ? el("button", { type: "button", class: "link-btn retry", onclick: () => retrySend(conv, item) }, "Retry") : null));
    } else if (item.type === "file") {
      body.append(fileCard(item.transfer));
    }
    nodes.push(el("div", { class: classes, dataset: { from: item.from, id: item.id || "" } }, avatar(item.from), body));
  }
  if (!conv.items.length && conv.historyState !== "loading") {
    nodes.push(el("p", { class: "system", text: conv.kind === "room" ? `This is the start of ${conv.name}.` : `This is the start of your conversation with ${conv.name}.` }));
  }
  box.replaceChildren(...nodes);
  if (toBottom || nearBottom) box.scrollTop = box.scrollHeight;
}

export function emptyState() {
  return el("div", { id: "empty-state", class: "empty-state" },
    el("h3", { text: "Welcome to chatd" }),
    el("p", { text: "Join a room or start a direct message from the sidebar. Everything you send is encrypted in this page for exactly the people in the conversation." }),
    el("button", { type: "button", class: "primary", onclick: openJoin }, "Join a room"));
}

export function renderMembers() {
  const panel = $("members-panel");
  const list = $("member-list");
  const conv = state.active;
  if (!conv) {
    panel.classList.add("hidden");
    return;
  }
  const entries = [];
  if (conv.kind === "room") {
    for (const m of conv.members.values()) entries.push(m);
  } else {
    entries.push({ name: state.me, spki: state.identity.spki });
    if (conv.peerSpki && conv.key !== fold(state.me)) entries.push({ name: conv.name, spki: conv.peerSpki, fp: conv.peerFp });
  }
  entries.sort((a, b) => fold(a.name).localeCompare(fold(b.name)));
  list.replaceChildren();
  for (const m of entries) {
    const key = fold(m.name);
    const self = key === fold(state.me);
    const pin = state.pins.get(key);
    const alert = state.alerts.get(key);
    let tag;
    if (self) tag = el("span", { class: "tag you", text: "you" });
    else if (state.guests.has(key)) tag = el("span", { class: "tag guest", title: "No account: anyone may use this name", text: "guest" });
    else if (alert) tag = el("span", { class: "tag changed", text: "KEY CHANGED" });
    else if (pin?.verified) tag = el("span", { class: "tag verified", text: "verified" });
    else tag = el("span", { class: "tag tofu", text: "not verified" });
    const fpNode = el("pre", { class: "fingerprint", text: m.fp ? fingerprintLines(m.fp) : "…" });
    if (!m.fp) fingerprintOf(m.spki).then((fp) => { fpNode.textContent = fingerprintLines(fp); });
    const actions = el("div", { class: "member-actions" });
    if (!self && alert) {
      actions.append(el("button", { type: "button", onclick: () => focusKeyAlert(m.name) }, "Check new key"));
    } else if (!self && pin && !pin.verified && !state.guests.has(key)) {
      actions.append(el("button", { type: "button", onclick: () => openVerify(m.name) }, "Verify"));
    }
    if (!self && conv.kind === "room") {
      actions.append(el("button", { type: "button", onclick: () => openDm(m.name) }, "Message"));
    }
    list.append(el("li", { dataset: { user: m.name } },
      el("div", { class: "member-top" }, avatar(m.name, true), el("span", { class: "name", text: m.name }), tag),
      fpNode, actions.childElementCount ? actions : null));
  }
}
