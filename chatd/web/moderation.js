// Room moderation in the browser (docs/protocol.rst, Room moderation): the
// commands typed in the composer, for the room shown, as the terminal client
// has them (/kick NAME [REASON], /ban NAME [REASON], /unban NAME, /op NAME,
// /deop NAME, /topic [TEXT], /password [NEW], /destroy, /info), and what the
// moderation events show. A line that is one of these is a command, never a
// message: it is not sent to the room.

import { removeRoom, systemNote } from "./conversations.js";
import { $, describeError, toast } from "./dom.js";
import { on } from "./events.js";
import { renderHeader, renderMembers } from "./render.js";
import { fold, state } from "./state.js";

// Each command: the request it makes of the room, from the words after it,
// and what to say once it is done. `words` is never empty for those that
// need a name (checked by `needsName`).
const COMMANDS = {
  kick: { needsName: true, request: (room, [name, ...why]) => ["kick", { roomId: room, userId: name, reason: why.join(" ") }], done: ([name]) => `Kicked ${name}` },
  ban: { needsName: true, request: (room, [name, ...why]) => ["ban", { roomId: room, userId: name, reason: why.join(" ") }], done: ([name]) => `Banned ${name}` },
  unban: { needsName: true, request: (room, [name]) => ["unban", { roomId: room, userId: name }], done: ([name]) => `${name} may come back` },
  op: { needsName: true, request: (room, [name]) => ["set_role", { roomId: room, userId: name, role: "operator" }], done: ([name]) => `${name} is an operator now` },
  deop: { needsName: true, request: (room, [name]) => ["set_role", { roomId: room, userId: name, role: "none" }], done: ([name]) => `${name} has no role now` },
  topic: { request: (room, words) => ["set_topic", { roomId: room, topic: words.join(" ") }], done: (words) => (words.length ? "Topic set" : "Topic removed") },
  password: { request: (room, [pw]) => ["set_password", pw ? { roomId: room, password: pw } : { roomId: room }], done: ([pw]) => (pw ? "Password set" : "Password removed") },
  destroy: { request: (room) => ["destroy_room", { roomId: room }], done: () => "Room destroyed" },
  info: { request: (room) => ["room_info", { roomId: room }], done: () => null },
};

const COMMAND_RE = /^\/(\w+)(?:\s+(.*))?$/s;

// The command a composer line is, or null for a message.
export function parseCommand(text) {
  const match = COMMAND_RE.exec(text.trim());
  if (!match || !Object.hasOwn(COMMANDS, match[1].toLowerCase())) return null;
  return { name: match[1].toLowerCase(), words: (match[2] || "").split(/\s+/).filter(Boolean) };
}

async function run(command) {
  const room = state.active;
  if (!room || room.kind !== "room") throw new Error("Moderation commands are for rooms: open one first");
  const spec = COMMANDS[command.name];
  if (spec.needsName && !command.words.length) throw new Error(`/${command.name} needs a name`);
  const [type, fields] = spec.request(room.name, command.words);
  const reply = await state.conn.request(type, fields);
  if (command.name === "info") {
    const banned = reply.banned.length ? ` · banned: ${reply.banned.join(", ")}` : "";
    systemNote(room, `Topic: ${reply.topic || "none"} · owners: ${reply.owners.join(", ") || "none"} · operators: ${reply.operators.join(", ") || "none"}${banned}`);
    return;
  }
  // The session that asked gets the answer, not the event: keep up here.
  if (command.name === "destroy") removeRoom(room, null);
  else if (command.name === "kick" || command.name === "ban") dropMember(room, command.words[0]);
  else if (command.name === "topic") {
    room.topic = reply.topic;
    if (state.active === room) renderHeader();
  }
  toast(spec.done(command.words));
}

function dropMember(room, name) {
  room.members.delete(fold(name));
  if (state.active === room) {
    renderHeader();
    renderMembers();
  }
}

// Expelled: kicked or banned.
function expelled(message, what) {
  const room = state.rooms.get(fold(message.roomId));
  if (!room) return;
  const why = message.reason ? `: ${message.reason}` : "";
  if (fold(message.userId) === fold(state.me)) {
    removeRoom(room, `You were ${what} ${room.name} by ${message.by}${why}`);
    return;
  }
  dropMember(room, message.userId);
  systemNote(room, `${message.userId} was ${what} by ${message.by}${why}`);
}

export function wireModeration() {
  // Registered before the composer's own handler, so that a command line
  // stops there and is never sent as a message.
  $("composer").addEventListener("submit", (event) => {
    const input = $("composer-input");
    const command = parseCommand(input.value);
    if (!command) return;
    event.preventDefault();
    event.stopImmediatePropagation();
    input.value = "";
    run(command).catch((e) => toast(describeError(e), "error"));
  });
  on("user_kicked", (message) => expelled(message, "kicked out of"));
  on("user_banned", (message) => expelled(message, "banned from"));
  on("topic_changed", (message) => {
    const room = state.rooms.get(fold(message.roomId));
    if (!room) return;
    room.topic = message.topic;
    systemNote(room, message.topic ? `${message.by} set the topic: ${message.topic}` : `${message.by} removed the topic`);
    if (state.active === room) renderHeader();
  });
  on("role_changed", (message) => {
    const room = state.rooms.get(fold(message.roomId));
    if (!room) return;
    systemNote(room, message.role === "none" ? `${message.by} took ${message.userId}'s role away` : `${message.by} made ${message.userId} ${message.role === "owner" ? "an owner" : "an operator"}`);
  });
  on("room_destroyed", (message) => {
    const room = state.rooms.get(fold(message.roomId));
    if (room) removeRoom(room, `${message.by} destroyed ${room.name}`);
  });
}
