// Clients of the servers under test: WebSocket dialects, SSE streams, HTTP requests.
//
// Everything here is written for a cheap receive path, because the load
// generator shares the machine with the server it measures: a delivery is
// recognized by one or two bytes of the frame and counted, never parsed (the
// meter samples a few frames to check them, see meter.mjs).

import http from "node:http";
import net from "node:net";
import WebSocket from "ws";

// Connections are spread over several loopback source addresses: each has its
// own range of ephemeral ports, so 10,000 connections, repeated run after run
// while the closed ones sit in TIME_WAIT, never run out of ports.
const SOURCES = 16;

/** The loopback source address of the i-th connection (127.0.0.2 and up). */
export function sourceAddress(i) {
  return `127.0.0.${2 + (i % SOURCES)}`;
}

const WS_OPTIONS = {
  // No compression, as a busy hub is advised to run (docs/websocket.md): it
  // would cost one compression per subscriber and message on every server.
  perMessageDeflate: false,
  skipUTF8Validation: true,
  handshakeTimeout: 15000,
};

/**
 * How a WebSocket dialect subscribes, publishes and marks a delivery.
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
    publishFrame: (seq, topic, payload) => `{"op":"pub","id":${seq},"topic":"${topic}","data":${payload}}`,
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
    publishFrame: (_seq, _topic, payload) => `42["pub",${payload}]`,
  },
};

/**
 * Open one WebSocket client and join `topic` (or, with `topic` null, just get
 * ready to publish). Resolves with the socket once joined; from then on each
 * delivery goes to `onDelivery(frame)`. The frame handler is installed before
 * the socket opens and switches state synchronously, so a delivery that comes
 * in the same TCP segment as the join reply is not missed.
 */
export function openWebSocket({ url, dialect, topic = null, after = null, index = 0, onDelivery = () => {}, onClose = () => {} }) {
  const d = DIALECTS[dialect];
  if (!d) throw new Error(`unknown dialect ${dialect}`);
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, d.protocols, { ...WS_OPTIONS, localAddress: sourceAddress(index) });
    let joined = false;
    const join = () => {
      joined = true;
      resolve(ws);
    };
    ws.on("open", () => {
      if (d.start(ws, topic, after)) join();
    });
    ws.on("message", (frame) => {
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
    });
    ws.on("error", (err) => {
      if (!joined) reject(err);
    });
    ws.on("close", (code, reason) => {
      if (!joined) reject(new Error(`closed during the handshake: ${code} ${reason}`));
      else onClose(code, reason.toString());
    });
  });
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
 * Open an SSE stream and count the occurrences of `marker` in it (one per
 * message: the payload's `"seq":` key), across chunk boundaries. Resolves
 * with the response once its head has arrived.
 */
export function openEventStream({ url, index, marker, onCount, onEnd = () => {} }) {
  const tail = marker.length - 1;
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: streamAgent, localAddress: sourceAddress(index), headers: { accept: "text/event-stream" } }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`SSE answered ${res.statusCode}`));
        return;
      }
      let carry = Buffer.alloc(0);
      res.on("data", (chunk) => {
        let found = 0;
        if (carry.length) found += countIn(Buffer.concat([carry, chunk.subarray(0, tail)]), marker);
        found += countIn(chunk, marker);
        carry = chunk.length >= tail ? chunk.subarray(chunk.length - tail) : Buffer.concat([carry, chunk]).subarray(-tail);
        if (found) onCount(found);
      });
      res.on("end", onEnd);
      res.on("error", onEnd);
      resolve(res);
    });
    req.on("error", reject);
  });
}

function countIn(buf, marker) {
  let n = 0;
  for (let at = buf.indexOf(marker); at !== -1; at = buf.indexOf(marker, at + marker.length)) n++;
  return n;
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

/**
 * A bare HTTP/1.1 GET on a connection of its own, for the long-poll
 * scenario: node:http's client costs the generator a few hundred
 * microseconds per answer, too much when 10,000 answers come at once.
 * Calls `onConnect()` once connected; resolves with {at, ok} when the answer
 * is in: `at` is when its first bytes came (performance.now()), `ok` whether
 * it is a 200 whose body holds `marker`. The socket stays open (`sockets`
 * collects it), so closing connections costs nothing while answers arrive.
 */
export function bareGet(url, { index, marker, onConnect, sockets }) {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: u.hostname, port: Number(u.port), localAddress: sourceAddress(index) });
    sockets.push(sock);
    let at = 0;
    let seen = Buffer.alloc(0);
    sock.once("connect", () => {
      onConnect();
      sock.write(`GET ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\n\r\n`);
    });
    sock.on("data", (chunk) => {
      if (!at) at = performance.now();
      seen = seen.length ? Buffer.concat([seen, chunk]) : chunk;
      if (seen.includes(marker)) resolve({ at, ok: seen.subarray(0, 12).toString() === "HTTP/1.1 200" });
    });
    sock.on("error", reject);
    sock.on("close", () => reject(new Error("closed before the answer")));
  });
}
