// Clients of the servers under test: WebSocket dialects, SSE streams, HTTP requests.
//
// Everything here is written for a cheap receive path, because the load
// generator shares the machine with the server it measures: a delivery is
// recognized by one or two bytes of the frame and counted, never parsed (the
// meter samples a few frames to check them, see meter.mjs). WebSocket clients
// are raw sockets (RawWebSocket below, not a WebSocket library): the upgrade is
// sent by hand, and the server's frames are cut out of each read by their
// headers, with no copy, no allocation and no UTF-8 check per frame; the same
// code serves every dialect, so every server under test is measured alike.

import crypto from "node:crypto";
import http from "node:http";
import net from "node:net";

// Connections are spread over several loopback source addresses: each has its
// own range of ephemeral ports, so 10,000 connections, repeated run after run
// while the closed ones sit in TIME_WAIT, never run out of ports.
const SOURCES = 16;

/** The loopback source address of the i-th connection (127.0.0.2 and up). */
export function sourceAddress(i) {
  return `127.0.0.${2 + (i % SOURCES)}`;
}

/**
 * How a WebSocket dialect subscribes and marks a delivery (fanout.c speaks
 * the same two dialects for the fan-out scenarios).
 *
 * `start(ws, topic, after)` sends what follows the opening handshake;
 * `step(ws, frame)` sees each frame until it returns true (joined; with no
 * topic, once the client may publish) or throws (refused). After that every
 * frame for which `isDelivery(frame)` is false goes to `control(ws, frame)`.
 */
export const DIALECTS = {
  // docs/websocket.md: {"op":"sub"} -> {"op":"ok","id":1}, then {"op":"msg",...}
  hubbub: {
    protocols: ["hubbub.v1.json"],
    start(ws, topic, after) {
      if (topic === null) return true;
      const sub = { op: "sub", id: 1, topics: [topic] };
      if (after) sub.after = after;
      ws.send(JSON.stringify(sub));
      return false;
    },
    step(ws, frame) {
      const reply = JSON.parse(frame);
      if (reply.op === "ok" && reply.id === 1) return true;
      throw new Error(`subscription refused: ${frame}`);
    },
    // '{"op":"' is 7 bytes: the 8th is the first letter of the op, and only msg starts with m.
    isDelivery: (frame) => frame[7] === 0x6d,
    control() {},
  },

  // A subscriber whose URL names its channel (nchan): subscribed once
  // upgraded, and every frame is a message as published.
  raw: {
    protocols: undefined,
    start: () => true,
    step: () => true,
    isDelivery: () => true,
    control() {},
  },

  // Engine.IO 4 over a WebSocket, as socket.io-client speaks it once upgraded:
  // "0{...}" open, "40" connect to "/", "42[event,...]" an event, "421[...]"
  // an event asking for ack 1, "431[...]" that ack; "2" ping, answered "3".
  socketio: {
    protocols: undefined,
    start() {
      return false;
    },
    step(ws, frame, topic) {
      const text = frame.toString();
      if (text[0] === "0") ws.send("40");
      else if (text.startsWith("40")) {
        if (topic === null) return true;
        ws.send(`421["join","${topic}"]`);
      } else if (text.startsWith("431")) return true;
      else if (text === "2") ws.send("3");
      else if (text.startsWith("44")) throw new Error(`connection refused: ${text}`);
      return false;
    },
    isDelivery: (frame) => frame[0] === 0x34 && frame[1] === 0x32, // "42"
    control(ws, frame) {
      if (frame.length === 1 && frame[0] === 0x32) ws.send("3"); // ping, pong
    },
  },
};

/**
 * Open one WebSocket client and join `topic` (or, with `topic` null, just get
 * ready to publish). Resolves with the socket once joined; from then on each
 * delivery goes to `onDelivery(frame)`, and the first close (a close frame, the
 * connection lost, a protocol error) to `onClose(code, reason)`. The frame
 * handler switches state synchronously, so a delivery that comes in the same
 * TCP segment as the join reply is not missed. Rejects when the upgrade is
 * refused, the dialect's join fails, or the connection closes before joining.
 *
 * A frame is a Buffer that lives only until the handler returns (see
 * READ_BUFFER): copy it to keep it.
 */
export function openWebSocket({ url, dialect, topic = null, after = null, index = 0, onDelivery = () => {}, onClose = () => {} }) {
  const d = DIALECTS[dialect];
  if (!d) throw new Error(`unknown dialect ${dialect}`);
  return new Promise((resolve, reject) => {
    let joined = false;
    const join = () => {
      joined = true;
      resolve(ws);
    };
    const ws = new RawWebSocket(url, d.protocols, index, {
      open() {
        if (d.start(ws, topic, after)) join();
      },
      message(frame) {
        if (joined) {
          if (d.isDelivery(frame)) onDelivery(frame);
          else d.control(ws, frame);
          return;
        }
        try {
          if (d.step(ws, frame, topic)) join();
        } catch (err) {
          ws.terminate();
          reject(err);
        }
      },
      end(code, reason, err) {
        if (!joined) reject(err ?? new Error(`closed during the handshake: ${code} ${reason}`));
        else onClose(code, reason);
      },
    });
  });
}

// The WebSocket client (RFC 6455, no extensions), as little of it as the
// servers under test need: the upgrade, then server frames parsed straight
// from the socket's reads, client frames masked on the way out.

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const HANDSHAKE_TIMEOUT_MS = 15000;
const MAX_HEAD = 16384;
const CRLFCRLF = Buffer.from("\r\n\r\n");
const [CONNECTING, OPEN, CLOSING, CLOSED] = [0, 1, 2, 3];
const OP_TEXT = 0x1, OP_BINARY = 0x2, OP_CLOSE = 0x8, OP_PING = 0x9, OP_PONG = 0xa;

// Every socket reads into this one buffer (net's `onread`), so a read
// allocates nothing: a read's frames are all handled before the next read
// overwrites it, and only the bytes of a frame still incomplete are copied.
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

// Masks of client frames, 4 bytes at a time from a pool of random bytes.
let maskPool = crypto.randomBytes(4096);
let maskAt = 0;

let warned = false;

class RawWebSocket {
  /**
   * Connects to `url` (ws://) from the loopback source address of connection
   * `index`, offering the subprotocols `protocols` (or none). `handlers`:
   * `open()` once upgraded, `message(payload)` for each text or binary frame,
   * `end(code, reason, err)` once, at the first close.
   */
  constructor(url, protocols, index, handlers) {
    const u = new URL(url);
    if (u.protocol !== "ws:") throw new Error(`only ws:// URLs are supported: ${url}`);
    this.handlers = handlers;
    this.readyState = CONNECTING;
    this.protocol = "";
    this.protocols = protocols ?? [];
    this.head = null; // the response head so far, while it has no CRLFCRLF
    this.carry = null; // the bytes (copies) of a frame that has not all arrived
    this.carried = 0;
    this.need = 0; // the length of that frame, once its header is in
    this.error = null;
    this.ended = false;
    const key = crypto.randomBytes(16).toString("base64");
    this.accept = crypto.createHash("sha1").update(key + GUID).digest("base64");
    const sock = net.connect({
      host: u.hostname.replace(/^\[(.*)\]$/, "$1"),
      port: Number(u.port || 80),
      localAddress: sourceAddress(index),
      onread: { buffer: READ_BUFFER, callback: (n, buf) => this.read(buf, n) },
    });
    this.sock = sock;
    sock.setNoDelay(true);
    sock.setTimeout(HANDSHAKE_TIMEOUT_MS, () => this.destroy(new Error("WebSocket opening handshake timed out")));
    sock.on("error", (err) => (this.error ??= err));
    sock.on("close", () => this.finish(1006, this.error?.message ?? "", this.error));
    const lines = [
      `GET ${u.pathname}${u.search} HTTP/1.1`, `Host: ${u.host}`, "Upgrade: websocket", "Connection: Upgrade",
      `Sec-WebSocket-Key: ${key}`, "Sec-WebSocket-Version: 13",
    ];
    if (this.protocols.length) lines.push(`Sec-WebSocket-Protocol: ${this.protocols.join(", ")}`);
    sock.write(lines.join("\r\n") + "\r\n\r\n");
  }

  /** Bytes written but not yet handed to the kernel. */
  get bufferedAmount() {
    return this.sock.writableLength;
  }

  /** Send a text frame (a string) or a binary one (a Buffer). */
  send(data) {
    if (this.readyState === OPEN) this.sock.write(clientFrame(typeof data === "string" ? OP_TEXT : OP_BINARY, data));
  }

  /** The closing handshake: a close frame, then the server closes the connection. */
  close(code = 1000, reason = "") {
    if (this.readyState !== OPEN) return;
    this.readyState = CLOSING;
    const payload = Buffer.alloc(2 + Buffer.byteLength(reason));
    payload.writeUInt16BE(code, 0);
    payload.write(reason, 2);
    this.sock.end(clientFrame(OP_CLOSE, payload));
    setTimeout(() => this.sock.destroy(), 5000).unref();
  }

  /** Drop the connection at once. */
  terminate() {
    this.readyState = CLOSED;
    this.sock.destroy();
  }

  read(buf, n) {
    if (this.readyState === OPEN || this.readyState === CLOSING) this.frames(buf, 0, n, false);
    else if (this.readyState === CONNECTING) this.upgrade(buf, n);
  }

  /** The response to the upgrade request; what follows its head is frames. */
  upgrade(buf, n) {
    const head = this.head === null ? Buffer.from(buf.subarray(0, n)) : Buffer.concat([this.head, buf.subarray(0, n)]);
    const end = head.indexOf(CRLFCRLF);
    if (end === -1) {
      if (head.length > MAX_HEAD) this.destroy(new Error(`WebSocket upgrade: no end to the response head in ${head.length} bytes`));
      else this.head = head;
      return;
    }
    this.head = null;
    const refused = this.checkUpgrade(head.toString("latin1", 0, end));
    if (refused) {
      this.destroy(new Error(`WebSocket upgrade of ${this.sock.remoteAddress}:${this.sock.remotePort}: ${refused}`));
      return;
    }
    this.readyState = OPEN;
    this.sock.setTimeout(0);
    this.handlers.open();
    if (this.readyState === OPEN && end + 4 < head.length) this.frames(head, end + 4, head.length, true);
  }

  /** Why the response head refuses the upgrade, or null when it accepts it. */
  checkUpgrade(text) {
    const lines = text.split("\r\n");
    if (!/^HTTP\/1\.[01] 101( |$)/.test(lines[0])) return `the server answered ${JSON.stringify(lines[0])}, not 101`;
    const headers = new Map();
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":");
      if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
    if (headers.get("upgrade")?.toLowerCase() !== "websocket") return "no Upgrade: websocket in the 101 response";
    const accept = headers.get("sec-websocket-accept");
    if (accept !== this.accept) return `Sec-WebSocket-Accept is ${JSON.stringify(accept)}, expected ${this.accept}`;
    const protocol = headers.get("sec-websocket-protocol");
    if (this.protocols.length && !this.protocols.includes(protocol)) {
      return `the server chose ${protocol === undefined ? "no subprotocol" : `the subprotocol ${protocol}`}, not one of ${this.protocols.join(", ")}`;
    }
    if (!this.protocols.length && protocol !== undefined) return `the server chose the subprotocol ${protocol}, none was offered`;
    if (headers.has("sec-websocket-extensions")) return "the server chose extensions, none was offered";
    this.protocol = protocol ?? "";
    return null;
  }

  /**
   * Handle the server frames in buf[at, end) (RFC 6455 §5.2: unmasked, a
   * 7-bit length or 126 + 16 bits or 127 + 64 bits). `owned`: `buf` is not
   * READ_BUFFER, so an incomplete frame at its end may be kept without a copy.
   */
  frames(buf, at, end, owned) {
    if (this.carry !== null) {
      // The rest of an incomplete frame: gather reads until it is all in.
      if (this.need > 0 && this.carried + end - at < this.need) {
        this.carry.push(owned ? buf.subarray(at, end) : Buffer.from(buf.subarray(at, end)));
        this.carried += end - at;
        return;
      }
      this.carry.push(buf.subarray(at, end));
      buf = Buffer.concat(this.carry, this.carried + end - at);
      [at, end, owned] = [0, buf.length, true];
      [this.carry, this.carried, this.need] = [null, 0, 0];
    }
    while (at < end) {
      const left = end - at;
      if (left < 2) break;
      const b1 = buf[at + 1];
      if (b1 & 0x80) return this.fail(1002, "a masked frame from the server");
      let length = b1 & 0x7f;
      let head = 2;
      if (length === 126) {
        if (left < 4) break;
        length = buf.readUInt16BE(at + 2);
        head = 4;
      } else if (length === 127) {
        if (left < 10) break;
        const high = buf.readUInt32BE(at + 2);
        if (high > 0x1fffff) return this.fail(1009, "a frame longer than 2^53 bytes");
        length = high * 0x100000000 + buf.readUInt32BE(at + 6);
        head = 10;
      }
      if (left < head + length) {
        this.need = head + length;
        break;
      }
      const b0 = buf[at];
      const payload = buf.subarray(at + head, at + head + length);
      at += head + length;
      // 0x81, 0x82: FIN, no RSV bit, a text or binary frame.
      if (b0 === 0x81 || b0 === 0x82) this.handlers.message(payload);
      else this.control(b0, payload);
      if (this.readyState === CLOSED) return;
    }
    if (at < end) {
      const rest = buf.subarray(at, end);
      this.carry = [owned ? rest : Buffer.from(rest)];
      this.carried = rest.length;
    }
  }

  /** Every frame but a whole text or binary one. */
  control(b0, payload) {
    const opcode = b0 & 0x0f;
    if (b0 & 0x70) this.fail(1002, `a frame with RSV bits set (${b0.toString(16)}), but no extension was negotiated`);
    else if (opcode === OP_PING) this.sock.write(clientFrame(OP_PONG, payload));
    else if (opcode === OP_PONG) return;
    else if (opcode === OP_CLOSE) {
      const code = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
      const reason = payload.length > 2 ? payload.toString("utf8", 2) : "";
      if (this.readyState === OPEN) {
        // The server closes: answer with its code (none when it gave none), then it closes the connection.
        this.readyState = CLOSING;
        this.sock.end(clientFrame(OP_CLOSE, payload.subarray(0, payload.length >= 2 ? 2 : 0)));
        setTimeout(() => this.sock.destroy(), 5000).unref();
      } // else the answer to close(): the server closes the connection now.
      this.finish(code, reason, null);
    } else if (opcode === 0 || (opcode < 8 && !(b0 & 0x80))) {
      this.fail(1003, "a fragmented message (FIN=0 or a continuation frame), which the servers under test do not send");
    } else this.fail(1002, `a frame with the unknown opcode ${opcode}`);
  }

  /** A protocol error: close with `code`, and end with an error saying why. */
  fail(code, why) {
    const err = new Error(`WebSocket protocol error: ${why}`);
    if (!warned) {
      warned = true;
      process.stderr.write(`loadgen: ${err.message} (closing the connection with ${code})\n`);
    }
    const payload = Buffer.alloc(2);
    payload.writeUInt16BE(code, 0);
    this.readyState = CLOSING;
    this.sock.end(clientFrame(OP_CLOSE, payload));
    setTimeout(() => this.sock.destroy(), 1000).unref();
    this.finish(code, err.message, err);
  }

  destroy(err) {
    this.error ??= err;
    this.sock.destroy();
  }

  finish(code, reason, err) {
    if (this.ended) return;
    this.ended = true;
    this.readyState = CLOSED;
    this.handlers.end(code, reason, err);
  }
}

/** A client frame (FIN, masked) of `opcode` carrying `data` (a string, as UTF-8, or a Buffer). */
function clientFrame(opcode, data) {
  const length = typeof data === "string" ? Buffer.byteLength(data) : data.length;
  const head = length < 126 ? 6 : length < 0x10000 ? 8 : 14;
  const frame = Buffer.allocUnsafe(head + length);
  frame[0] = 0x80 | opcode;
  if (length < 126) frame[1] = 0x80 | length;
  else if (length < 0x10000) {
    frame[1] = 0x80 | 126;
    frame.writeUInt16BE(length, 2);
  } else {
    frame[1] = 0x80 | 127;
    frame.writeUInt32BE(Math.floor(length / 0x100000000), 2);
    frame.writeUInt32BE(length >>> 0, 6);
  }
  if (maskAt === maskPool.length) [maskPool, maskAt] = [crypto.randomBytes(4096), 0];
  const [m0, m1, m2, m3] = [maskPool[maskAt], maskPool[maskAt + 1], maskPool[maskAt + 2], maskPool[maskAt + 3]];
  maskAt += 4;
  [frame[head - 4], frame[head - 3], frame[head - 2], frame[head - 1]] = [m0, m1, m2, m3];
  if (typeof data === "string") frame.write(data, head);
  else data.copy(frame, head);
  const end = head + length;
  const end4 = head + (length & ~3);
  let i = head;
  for (; i < end4; i += 4) {
    frame[i] ^= m0;
    frame[i + 1] ^= m1;
    frame[i + 2] ^= m2;
    frame[i + 3] ^= m3;
  }
  for (let k = head - 4; i < end; i++, k++) frame[i] ^= frame[k];
  return frame;
}

/** Run `open(i)` for i < n with at most `concurrency` pending; resolves with all results. */
export async function openMany(n, concurrency, open) {
  const results = new Array(n);
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      results[i] = await open(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, concurrency) }, worker));
  return results;
}

// One connection per long-lived stream or poll; a small pool for publishing.
const streamAgent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
const requestAgent = new http.Agent({ keepAlive: true, maxSockets: 16 });

/**
 * Open an SSE stream and report the number after each occurrence of `marker`
 * in it (one per message: the payload's `"seq":` key) to `onSeq`, across
 * chunk boundaries. Resolves with the response once its head has arrived.
 */
export function openEventStream({ url, index, marker, onSeq, onEnd = () => {} }) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: streamAgent, localAddress: sourceAddress(index), headers: { accept: "text/event-stream" } }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`SSE answered ${res.statusCode}`));
        return;
      }
      let carry = null;
      res.on("data", (chunk) => {
        const buf = carry ? Buffer.concat([carry, chunk]) : chunk;
        // What is left unread: a marker whose number may go on in the next
        // chunk, or the bytes that may be the start of a marker.
        carry = readSeqs(buf, marker, onSeq);
      });
      res.on("end", onEnd);
      res.on("error", onEnd);
      resolve(res);
    });
    req.on("error", reject);
  });
}

/** Each number after `marker` in `buf` to `onSeq`; returns the bytes to carry into the next read. */
export function readSeqs(buf, marker, onSeq) {
  let done = 0;
  for (let at = buf.indexOf(marker); at !== -1; at = buf.indexOf(marker, done)) {
    let i = at + marker.length;
    let seq = 0;
    for (; i < buf.length && buf[i] >= 0x30 && buf[i] <= 0x39; i++) seq = seq * 10 + buf[i] - 0x30;
    if (i === buf.length) return Buffer.from(buf.subarray(at)); // the number may go on
    onSeq(seq);
    done = i;
  }
  return Buffer.from(buf.subarray(Math.max(done, buf.length - (marker.length - 1))));
}

/**
 * One HTTP request; resolves with {status, body} (a Buffer). `stream` sends it
 * on a connection of its own (long polls), else on the keep-alive pool;
 * `onConnect()` is called once its connection is established.
 */
export function request(url, { method = "GET", body = null, headers = {}, stream = false, index = 0, onConnect = null } = {}) {
  return new Promise((resolve, reject) => {
    const options = { method, headers, agent: stream ? streamAgent : requestAgent };
    if (stream) options.localAddress = sourceAddress(index);
    const req = http.request(url, options, (res) => {
      const parts = [];
      res.on("data", (chunk) => parts.push(chunk));
      res.on("end", () => resolve({ status: res.statusCode, body: Buffer.concat(parts) }));
      res.on("error", reject);
    });
    req.on("error", reject);
    if (onConnect) req.on("socket", (sock) => (sock.connecting ? sock.once("connect", onConnect) : onConnect()));
    req.end(body);
  });
}

/** POST a JSON body; rejects unless the answer is 2xx. */
export async function postJson(url, body) {
  const res = await request(url, { method: "POST", body, headers: { "content-type": "application/json" } });
  if (res.status < 200 || res.status > 299) throw new Error(`POST ${url} answered ${res.status}: ${res.body}`);
  return res;
}
