// File transfer (docs/protocol.rst) over the WebSocket door: the file is
// described by a signed file envelope (header chatd-file-v1) that carries a fresh
// 32-byte file key, and travels in AES-256-GCM chunks the server relays within a
// window, never storing them.
//
// WebSocket messages, as this client speaks them (section 5's table, with the
// transfer id as "transferId" because "id" is the request id):
//   -> file_offer {roomId | to, size, chunks, chunkSize, envelope}  <- {transferId}
//   <- file_offered {transferId, from, roomId | to, size, chunks, chunkSize, envelope}
//   -> file_answer {transferId, accept}
//   <- file_start {transferId, accepted, window}
//   -> file_chunk {transferId, index, data}     <- file_chunk {transferId, index, data}
//   -> file_ack {transferId, index}
//   <- file_next {transferId, limit}
//   -> file_done {transferId}                   <- file_done {transferId}
//   -> file_cancel {transferId, reason}         <- file_cancel {transferId, reason}

import * as e2e from "./crypto.js";

export const CHUNK_SIZE = 192 * 1024;
export const MAX_SEND_BYTES = 256 * 1024 * 1024;
const MAX_RECEIVE_BYTES = 1024 * 1024 * 1024;

// A name that is safe to offer as a download: no directories, no control or
// reserved characters, not empty, not a dot name, not too long.
export function sanitizeFileName(name) {
  let base = String(name ?? "").split(/[\\/]/).pop();
  base = base.replace(/[\u0000-\u001f\u007f-\u009f<>:"|?*\u202a-\u202e\u2066-\u2069]/g, "_");
  base = base.replace(/^[\s.]+/, "").replace(/[\s.]+$/, "");
  if (base.length > 120) {
    const dot = base.lastIndexOf(".");
    const ext = dot > 0 && base.length - dot <= 12 ? base.slice(dot) : "";
    base = base.slice(0, 120 - ext.length) + ext;
  }
  if (!base || /^(con|prn|aux|nul|com\d|lpt\d)(\..*)?$/i.test(base)) base = "download" + (base ? "_" + base : "");
  return base;
}

export function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = -1;
  do {
    value /= 1024;
    unit++;
  } while (value >= 1024 && unit < units.length - 1);
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

// A transfer's rate is shown once it has been measured over this long: sooner,
// one burst of chunks would promise far too much (the terminal client's rule).
const RATE_AFTER_MS = 1000;

// "1.2 MB/s, 0:42 left": the mean rate since `started` ([ms, bytes done
// then]) and the time the rest takes at that rate; empty until the rate has
// been measured for RATE_AFTER_MS, or while nothing moved.
export function rateAndTimeLeft(done, total, started, now = Date.now()) {
  if (!started) return "";
  const [since, doneThen] = started;
  const elapsed = now - since;
  if (elapsed < RATE_AFTER_MS || done <= doneThen) return "";
  const rate = (done - doneThen) / (elapsed / 1000);
  const left = Math.round((total - done) / rate);
  const two = (n) => String(n).padStart(2, "0");
  const [hours, minutes, seconds] = [Math.floor(left / 3600), Math.floor((left % 3600) / 60), left % 60];
  const clock = hours ? `${hours}:${two(minutes)}:${two(seconds)}` : `${minutes}:${two(seconds)}`;
  return `${formatSize(Math.floor(rate))}/s, ${clock} left`;
}

// The bytes of `transfer` sent or received so far.
export function bytesDone(transfer) {
  return Math.min(transfer.size, Math.round((transfer.progress || 0) * transfer.size));
}

function transferIdOf(message) {
  return message.transferId ?? message.fileId;
}

// One file on its way out or in. `state` is one of: offering, waiting, sending,
// sent, offered, receiving, done, declined, cancelled, failed, unsupported.
class Transfer {
  constructor(fields) {
    Object.assign(this, {
      transferId: null, direction: "out", name: "", size: 0, chunks: 1, chunkSize: CHUNK_SIZE,
      state: "offering", progress: 0, detail: "", url: null, from: null, conv: null, time: Date.now(),
      started: null, // [ms, bytes done then]: when the chunks started to move
    }, fields);
  }
}

export class FileTransfers {
  // hooks: { conn(), me(), reader(env) (our entry in env), identity(), sealFor(conv, plaintext, domain, send),
  //          senderKey(name, conv, env) -> spki or null, conversationFor(target) -> conv,
  //          replayed(env) -> why it is a replay or null, remember(env),
  //          changed(transfer), notice(conv, text, bad) }
  constructor(hooks) {
    this.hooks = hooks;
    this.byId = new Map();
    this.early = new Map();
    this.supported = true;
  }

  // -- sending ----------------------------------------------------------------

  async send(conv, file) {
    const transfer = new Transfer({
      direction: "out", name: sanitizeFileName(file.name), size: file.size, conv, from: this.hooks.me(),
    });
    this.hooks.add(conv, transfer);
    if (file.size > MAX_SEND_BYTES) {
      return this.fail(transfer, `files of more than ${formatSize(MAX_SEND_BYTES)} cannot be sent from the browser`);
    }
    try {
      const data = new Uint8Array(await file.arrayBuffer());
      const chunks = Math.max(1, Math.ceil(data.length / CHUNK_SIZE));
      const fileKey = e2e.randomBytes(32);
      const meta = {
        name: transfer.name,
        size: data.length,
        sha256: e2e.hex(await e2e.sha256(data)),
        chunk_size: CHUNK_SIZE,
        chunks,
        file_key: e2e.b64(fileKey),
      };
      Object.assign(transfer, { size: data.length, chunks, chunkSize: CHUNK_SIZE, data, state: "offering" });
      transfer.key = await e2e.importFileKey(fileKey);
      fileKey.fill(0);
      this.hooks.changed(transfer);
      const target = conv.kind === "room" ? { roomId: conv.name } : { to: conv.name };
      const { env, reply } = await this.hooks.sealFor(conv, e2e.utf8(JSON.stringify(meta)), e2e.FILE,
        (envelope) => this.hooks.conn().request("file_offer", {
          ...target, size: data.length, chunks, chunkSize: CHUNK_SIZE, envelope,
        }));
      transfer.envelopeId = env.id;
      transfer.transferId = transferIdOf(reply);
      if (transfer.transferId === undefined) throw new Error("the server gave the offer no transferId");
      this.byId.set(transfer.transferId, transfer);
      transfer.state = "waiting";
      transfer.detail = "waiting for the recipients to accept";
      transfer.sent = 0;
      transfer.limit = -1;
      this.hooks.changed(transfer);
      // Events may have arrived before the offer's response was read.
      const early = this.early.get(transfer.transferId) || [];
      this.early.delete(transfer.transferId);
      for (const message of early) this.handle(message);
    } catch (e) {
      if (e.code === "bad_request" && /unknown message type/i.test(e.message || "")) {
        this.supported = false;
        transfer.state = "unsupported";
        transfer.detail = "This server does not support file transfer over WebSocket yet.";
        transfer.data = null;
        this.hooks.changed(transfer);
        this.hooks.unsupported?.();
        return;
      }
      this.fail(transfer, e.message || String(e));
    }
  }

  fail(transfer, why) {
    transfer.state = "failed";
    transfer.detail = why;
    transfer.data = null;
    this.hooks.changed(transfer);
  }

  started(message) {
    const transfer = this.byId.get(transferIdOf(message));
    if (!transfer) return;
    if (transfer.direction !== "out") return;
    transfer.state = "sending";
    transfer.started = [Date.now(), 0];
    transfer.accepted = message.accepted;
    transfer.limit = Math.min((message.window ?? 1) - 1, transfer.chunks - 1);
    transfer.detail = `${message.accepted ?? "?"} accepted`;
    this.hooks.changed(transfer);
    this.pump(transfer);
  }

  next(message) {
    const transfer = this.byId.get(transferIdOf(message));
    if (!transfer || transfer.direction !== "out") return;
    transfer.limit = Math.max(transfer.limit, Math.min(message.limit, transfer.chunks - 1));
    this.pump(transfer);
  }

  async pump(transfer) {
    if (transfer.pumping) return;
    transfer.pumping = true;
    try {
      while (transfer.state === "sending" && transfer.sent <= transfer.limit && transfer.sent < transfer.chunks) {
        const index = transfer.sent;
        const plain = transfer.data.subarray(index * transfer.chunkSize, (index + 1) * transfer.chunkSize);
        const sealed = await e2e.sealChunk(transfer.key, transfer.envelopeId, index, plain);
        await this.hooks.conn().request("file_chunk", { transferId: transfer.transferId, index, data: e2e.b64(sealed) });
        transfer.sent = index + 1;
        transfer.progress = transfer.sent / transfer.chunks;
        this.hooks.changed(transfer);
      }
      if (transfer.state === "sending" && transfer.sent === transfer.chunks) {
        transfer.state = "sent";
        transfer.detail = "waiting for the recipients to confirm";
        this.hooks.changed(transfer);
        await this.hooks.conn().request("file_done", { transferId: transfer.transferId });
      }
    } catch (e) {
      if (transfer.state === "sending" || transfer.state === "sent") this.fail(transfer, e.message || String(e));
    } finally {
      transfer.pumping = false;
    }
  }

  // -- receiving --------------------------------------------------------------

  async offered(message) {
    const transferId = transferIdOf(message);
    const from = message.from ?? message.userId;
    const target = message.roomId !== undefined ? { kind: "room", name: message.roomId }
      : { kind: "user", name: message.to ?? message.target };
    const conv = this.hooks.conversationFor(from, target);
    const transfer = new Transfer({ direction: "in", transferId, from, conv, state: "offered" });
    this.byId.set(transferId, transfer);
    try {
      const env = e2e.checkEnvelope(message.envelope);
      if (env.from !== from) throw new Error("the file envelope is not from its sender");
      const replayed = this.hooks.replayed(env);
      if (replayed) throw new Error(replayed);
      const spki = await this.hooks.senderKey(from, conv, env);
      if (!spki || !(await e2e.verifySignature(env, spki, e2e.FILE))) {
        throw new Error("the offer's signature does not match the sender's pinned key");
      }
      const plain = await e2e.decrypt(env, this.hooks.reader(env), this.hooks.identity().oaep, e2e.FILE);
      this.hooks.remember(env);
      const meta = JSON.parse(e2e.fromUtf8(plain));
      const fileKey = e2e.unb64(meta.file_key);
      const chunks = Math.max(1, Math.ceil(meta.size / meta.chunk_size));
      if (!Number.isSafeInteger(meta.size) || meta.size < 0 || !Number.isSafeInteger(meta.chunk_size) || meta.chunk_size < 1
          || meta.chunks !== chunks || typeof meta.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(meta.sha256)
          || fileKey.length !== 32) {
        throw new Error("the file description is malformed");
      }
      if (message.size !== meta.size || message.chunks !== meta.chunks || message.chunkSize !== meta.chunk_size) {
        throw new Error("the server's size or chunk numbers differ from the signed ones");
      }
      if (meta.size > MAX_RECEIVE_BYTES) throw new Error(`larger than ${formatSize(MAX_RECEIVE_BYTES)}`);
      Object.assign(transfer, {
        name: sanitizeFileName(meta.name), size: meta.size, chunks: meta.chunks, chunkSize: meta.chunk_size,
        sha256: meta.sha256, envelopeId: env.id, key: await e2e.importFileKey(fileKey), parts: new Array(meta.chunks),
        received: 0,
      });
      fileKey.fill(0);
      this.hooks.add(conv, transfer);
    } catch (e) {
      transfer.state = "failed";
      transfer.detail = `refused an offer from ${from}: ${e.message}`;
      this.hooks.add(conv, transfer);
      this.hooks.conn().request("file_answer", { transferId, accept: false }).catch(() => {});
    }
  }

  async answer(transfer, accept) {
    if (transfer.state !== "offered") return;
    transfer.state = accept ? "receiving" : "declined";
    transfer.started = [Date.now(), 0];
    transfer.detail = accept ? "waiting for the first chunk" : "you declined";
    this.hooks.changed(transfer);
    try {
      await this.hooks.conn().request("file_answer", { transferId: transfer.transferId, accept });
    } catch (e) {
      if (accept) this.fail(transfer, e.message);
    }
  }

  async chunk(message) {
    const transfer = this.byId.get(transferIdOf(message));
    if (!transfer || transfer.direction !== "in" || transfer.state !== "receiving") return;
    const index = message.index;
    try {
      if (!Number.isSafeInteger(index) || index < 0 || index >= transfer.chunks) throw new Error(`chunk index ${index} out of range`);
      const plain = await e2e.openChunk(transfer.key, transfer.envelopeId, index, e2e.unb64(message.data));
      const expected = index < transfer.chunks - 1 ? transfer.chunkSize : transfer.size - transfer.chunkSize * (transfer.chunks - 1);
      if (plain.length !== expected) throw new Error(`chunk ${index} has the wrong size`);
      if (!transfer.parts[index]) {
        transfer.parts[index] = plain;
        transfer.received++;
      }
      transfer.progress = transfer.received / transfer.chunks;
      this.hooks.changed(transfer);
      await this.hooks.conn().request("file_ack", { transferId: transfer.transferId, index });
    } catch (e) {
      this.fail(transfer, e.message);
      transfer.parts = null;
      this.hooks.conn().request("file_cancel", { transferId: transfer.transferId, reason: "bad chunk" }).catch(() => {});
    }
  }

  async done(message) {
    const transfer = this.byId.get(transferIdOf(message));
    if (!transfer) return;
    if (transfer.direction === "out") {
      transfer.state = "done";
      transfer.detail = "delivered";
      transfer.progress = 1;
      transfer.data = null;
      this.hooks.changed(transfer);
      return;
    }
    if (transfer.state !== "receiving") return;
    try {
      if (transfer.received !== transfer.chunks) throw new Error("chunks are missing");
      const whole = e2e.concat(...transfer.parts);
      if (whole.length !== transfer.size) throw new Error("the file has the wrong size");
      if (e2e.hex(await e2e.sha256(whole)) !== transfer.sha256) throw new Error("the file's SHA-256 does not match the signed one");
      transfer.url = URL.createObjectURL(new Blob([whole], { type: "application/octet-stream" }));
      transfer.parts = null;
      transfer.state = "done";
      transfer.progress = 1;
      transfer.detail = "checked: size and signed SHA-256 match";
      this.hooks.changed(transfer);
    } catch (e) {
      transfer.parts = null;
      this.fail(transfer, e.message);
    }
  }

  cancelled(message) {
    const transfer = this.byId.get(transferIdOf(message));
    if (!transfer) return;
    if (["done", "failed", "declined"].includes(transfer.state)) return;
    transfer.state = "cancelled";
    transfer.detail = message.reason ? `cancelled: ${message.reason}` : "cancelled";
    transfer.data = null;
    transfer.parts = null;
    this.hooks.changed(transfer);
  }

  async cancel(transfer) {
    if (!["offered", "waiting", "sending", "sent", "receiving"].includes(transfer.state)) return;
    const wasOffered = transfer.state === "offered";
    transfer.state = "cancelled";
    transfer.detail = "you cancelled";
    transfer.data = null;
    transfer.parts = null;
    this.hooks.changed(transfer);
    if (transfer.transferId == null) return;
    const request = wasOffered ? ["file_answer", { transferId: transfer.transferId, accept: false }]
      : ["file_cancel", { transferId: transfer.transferId, reason: "cancelled by the user" }];
    this.hooks.conn().request(...request).catch(() => {});
  }

  handle(message) {
    if (!message.type.startsWith("file_")) return false;
    const transferId = transferIdOf(message);
    if (message.type !== "file_offered" && !this.byId.has(transferId)) {
      // Perhaps for an offer whose response has not been read yet; keep a few.
      if (this.early.size < 16) this.early.set(transferId, [...(this.early.get(transferId) || []), message].slice(-64));
      return true;
    }
    switch (message.type) {
      case "file_offered": this.offered(message); break;
      case "file_start": this.started(message); break;
      case "file_chunk": this.chunk(message); break;
      case "file_next": this.next(message); break;
      case "file_done": this.done(message); break;
      case "file_cancel": this.cancelled(message); break;
      default: break;
    }
    return true;
  }
}
