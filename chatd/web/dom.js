// Small helpers for building the page: elements, avatars, times, toasts,
// fingerprints laid out for reading. They know nothing of the chat's state.

import { ServerError } from "./connection.js";
import { fold } from "./store.js";

export const $ = (id) => document.getElementById(id);

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function toast(text, kind = "") {
  const node = el("div", { class: `toast ${kind}`, role: "status", text });
  $("toasts").append(node);
  setTimeout(() => node.remove(), kind === "error" ? 7000 : 4500);
}

function hue(name) {
  let h = 0;
  for (const c of fold(name)) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return h % 360;
}

export function avatar(name, small = false) {
  const node = el("span", { class: small ? "avatar small" : "avatar", text: name.replace(/^#/, "").slice(0, 1) || "?" });
  node.style.background = `hsl(${hue(name)} 55% 48%)`;
  return node;
}

export function timeOf(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

export function dayOf(ms) {
  const date = new Date(ms);
  const today = new Date();
  const yesterday = new Date(Date.now() - 86400000);
  if (date.toDateString() === today.toDateString()) return "Today";
  if (date.toDateString() === yesterday.toDateString()) return "Yesterday";
  return date.toLocaleDateString([], { weekday: "long", year: "numeric", month: "long", day: "numeric" });
}

export function parseTime(iso) {
  const ms = Date.parse(iso);
  return Number.isFinite(ms) ? ms : Date.now();
}

// Eight groups a line (or `perLine`), so a fingerprint reads like a table.
export function fingerprintLines(fp, perLine = 8) {
  const groups = fp.split(" ");
  const lines = [];
  for (let i = 0; i < groups.length; i += perLine) lines.push(groups.slice(i, i + perLine).join(" "));
  return lines.join("\n");
}

export function describeError(e) {
  if (e instanceof ServerError) return `${e.message}`;
  return e?.message || String(e);
}

// Every [data-close] button of a dialog closes it.
export function closeOnCancel(dialog) {
  for (const button of dialog.querySelectorAll("[data-close]")) button.addEventListener("click", () => dialog.close());
}
