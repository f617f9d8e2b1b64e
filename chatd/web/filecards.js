// Files in the conversation: the page's FileTransfers (files.js) wired to the
// conversations and the keys, and the card that shows each transfer.

import { addItem, dmWith } from "./conversations.js";
import { $, describeError, el, toast } from "./dom.js";
import { bytesDone, FileTransfers, formatSize, rateAndTimeLeft } from "./files.js";
import { recipientsFor, sealAndSend } from "./messaging.js";
import { renderComposer, renderMessages } from "./render.js";
import { fold, state } from "./state.js";
import { readerFor, signingKey } from "./devicetrust.js";
import { senderKey } from "./trust.js";

export const transfers = new FileTransfers({
  conn: () => state.conn,
  me: () => state.me,
  reader: (env) => readerFor(env),
  identity: () => state.identity,
  sealFor: (conv, plaintext, domain, send) => sealAndSend(conv, plaintext, domain, send),
  senderKey: async (name, conv, env) => signingKey(name, env, await senderKey(name, conv)),
  replayed: (env) => state.replay.replayed(env.from, env.id, env.ts),
  remember: (env) => state.replay.remember(env.from, env.id, env.ts),
  conversationFor: (from, target) => {
    if (target.kind === "room") return state.rooms.get(fold(target.name)) || dmWith(from);
    return fold(from) === fold(state.me) ? dmWith(target.name) : dmWith(from);
  },
  add: (conv, transfer) => {
    addItem(conv, { type: "file", time: transfer.time, transfer, from: transfer.direction === "out" ? state.me : transfer.from });
  },
  changed: (transfer) => updateFileCard(transfer),
  unsupported: () => {
    $("btn-file").disabled = true;
    $("btn-file").title = "This server does not support file transfer over WebSocket yet";
  },
});

export const fileCards = new Map();

export function fileIcon() {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("class", "file-icon");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", "M6 2.8h8l4.2 4.2v14.2H6zM14 2.8V7h4.2");
  svg.append(path);
  return svg;
}

export function fileCard(transfer) {
  const card = el("div", { class: "file-card" });
  fileCards.set(transfer, card);
  fillFileCard(card, transfer);
  return card;
}

export function fillFileCard(card, transfer) {
  const out = transfer.direction === "out";
  const bad = ["failed", "cancelled", "unsupported"].includes(transfer.state);
  card.className = bad ? "file-card bad" : "file-card";
  card.dataset.state = transfer.state;
  const parts = [
    el("div", { class: "file-name" }, fileIcon(), transfer.name || "(file)"),
    el("div", { class: "file-info", text: [transfer.size ? formatSize(transfer.size) : null, out ? "you are sending" : `from ${transfer.from}`, transfer.detail].filter(Boolean).join(" · ") }),
  ];
  if (["sending", "receiving", "sent"].includes(transfer.state)) {
    parts.push(el("progress", { max: "1", value: String(transfer.progress || 0) }));
  }
  if (["sending", "receiving"].includes(transfer.state)) {
    const rate = rateAndTimeLeft(bytesDone(transfer), transfer.size, transfer.started);
    if (rate) parts.push(el("div", { class: "file-rate", text: rate }));
  }
  const actions = el("div", { class: "file-actions" });
  if (transfer.state === "offered") {
    actions.append(
      el("button", { type: "button", class: "primary file-accept", onclick: () => transfers.answer(transfer, true) }, "Accept"),
      el("button", { type: "button", class: "file-decline", onclick: () => transfers.answer(transfer, false) }, "Decline"));
  } else if (["waiting", "sending", "receiving"].includes(transfer.state)) {
    actions.append(el("button", { type: "button", onclick: () => transfers.cancel(transfer) }, "Cancel"));
  } else if (transfer.state === "done" && transfer.url) {
    actions.append(el("a", { class: "download", href: transfer.url, download: transfer.name, rel: "noopener" }, `Download ${transfer.name}`));
  }
  if (actions.childElementCount) parts.push(actions);
  card.replaceChildren(...parts);
}

export function updateFileCard(transfer) {
  const card = fileCards.get(transfer);
  if (card && card.isConnected) fillFileCard(card, transfer);
  else if (state.active === transfer.conv) renderMessages();
  if (transfer.state === "unsupported") renderComposer();
}

export async function sendFile(file) {
  const conv = state.active;
  if (!conv || !file) return;
  try {
    await recipientsFor(conv);
  } catch (e) {
    toast(describeError(e), "error");
    return;
  }
  transfers.send(conv, file);
}
