// The WebSocket to chatd (docs/protocol.rst): JSON requests that carry an
// "id" and get one response echoing it, and events that carry none.

export class ServerError extends Error {
  constructor(reply) {
    super(reply.message || reply.code || "error");
    this.code = reply.code;
    this.reply = reply;
  }
}

export class Disconnected extends Error {}

const REQUEST_TIMEOUT_MS = 30000;
// The server drops a session after 30 s without a byte from it (20 s: warning);
// a quiet browser says something small every 10 s.
const KEEPALIVE_MS = 10000;

export class Connection {
  constructor(url, { onEvent, onClose }) {
    this.url = url;
    this.onEvent = onEvent;
    this.onClose = onClose;
    this.nextId = 1;
    this.pending = new Map();
    this.socket = null;
    this.lastSent = 0;
    this.keepaliveTimer = null;
    this.keepaliveType = "ping";
    this.closed = false;
  }

  open() {
    return new Promise((resolve, reject) => {
      let settled = false;
      const socket = new WebSocket(this.url);
      this.socket = socket;
      const timer = setTimeout(() => {
        if (!settled) {
          settled = true;
          socket.close();
          reject(new Disconnected("the server did not answer"));
        }
      }, 15000);
      socket.onopen = () => {
        settled = true;
        clearTimeout(timer);
        this.lastSent = Date.now();
        this.keepaliveTimer = setInterval(() => this.keepalive(), 2000);
        resolve();
      };
      socket.onmessage = (event) => this.received(event.data);
      socket.onclose = (event) => {
        clearTimeout(timer);
        this.shutDown(event);
        if (!settled) {
          settled = true;
          reject(new Disconnected(`could not connect (${event.code})`));
        }
      };
      socket.onerror = () => {};
    });
  }

  shutDown(event) {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.keepaliveTimer);
    for (const { reject, timer } of this.pending.values()) {
      clearTimeout(timer);
      reject(new Disconnected("disconnected"));
    }
    this.pending.clear();
    this.onClose?.(event);
  }

  close() {
    this.socket?.close(1000);
  }

  get isOpen() {
    return !this.closed && this.socket?.readyState === WebSocket.OPEN;
  }

  received(data) {
    if (typeof data !== "string") return;
    let message;
    try {
      message = JSON.parse(data);
    } catch (e) {
      console.warn("chatd: a frame that is not JSON", e);
      return;
    }
    if (typeof message !== "object" || message === null || typeof message.type !== "string") return;
    if (message.id !== undefined && this.pending.has(message.id)) {
      const { resolve, reject, timer } = this.pending.get(message.id);
      this.pending.delete(message.id);
      clearTimeout(timer);
      if (message.type === "error") reject(new ServerError(message));
      else resolve(message);
      return;
    }
    if (message.id !== undefined) return; // a response to a request given up on
    try {
      this.onEvent(message);
    } catch (e) {
      console.error("chatd: handling event", message.type, e);
    }
  }

  send(message) {
    if (!this.isOpen) throw new Disconnected("not connected");
    this.socket.send(JSON.stringify(message));
    this.lastSent = Date.now();
  }

  // Send a request and resolve with its response (reject with ServerError on
  // `error`). Bounded: a request without an answer fails after 30 s.
  request(type, fields = {}, timeoutMs = REQUEST_TIMEOUT_MS) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      try {
        this.send({ type, ...fields, id });
      } catch (e) {
        reject(e);
        return;
      }
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Disconnected(`no answer to ${type}`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
    });
  }

  keepalive() {
    if (!this.isOpen || Date.now() - this.lastSent < KEEPALIVE_MS) return;
    // `ping` where the server knows it; `list_rooms` (harmless) where it does not.
    this.request(this.keepaliveType, {}).catch((e) => {
      if (e instanceof ServerError && e.code === "bad_request") this.keepaliveType = "list_rooms";
    });
  }
}
