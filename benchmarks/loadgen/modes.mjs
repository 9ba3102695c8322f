// The load generator's modes, one per kind of scenario. Each takes its spec
// (the JSON object given on the command line, see main.mjs) and `mark(name)`,
// which tells the orchestrator when a measured window opens and closes, and
// resolves with the figures of the run.

import * as http from "node:http";
import { readFile } from "node:fs/promises";
import { openEventStream, openMany, openWebSocket, postJson, request } from "./clients.mjs";
import { Meter, now, payload, sleep, summarize } from "./meter.mjs";

const CONNECT_CONCURRENCY = 200;
const MARKER = Buffer.from('"seq":');

/**
 * Fan-out over SSE (`sse_url`): `n` subscribers, one publisher over HTTP
 * (`publish_url`). Deliveries per second at the highest rate that keeps up,
 * then latencies at half that rate. (Fan-out over WebSockets is fanout.c's.)
 */
export async function fanout(spec, mark) {
  if (!spec.sse_url) throw new Error("fan-out over WebSockets is run by fanout.c, not here");
  const meter = new Meter(spec.n, () => {});
  let closed = 0;
  let publishErrors = 0;
  const onClose = () => closed++;
  await openMany(spec.n, CONNECT_CONCURRENCY, (i) =>
    openEventStream({ url: spec.sse_url, index: i, marker: MARKER, onEnd: onClose, onSeq: (seq) => meter.deliver(i, seq) }));
  const publish = (seq) => postJson(spec.publish_url, payload(seq, spec.size)).catch(() => publishErrors++);
  meter.publish = publish;
  await meter.prime(publish, 15000);
  const max = await meter.windowed(spec.window, spec.warmup, spec.seconds, mark);
  if (!(await meter.drain())) throw new Error(`deliveries stopped with ${meter.sent - meter.completed} messages in flight`);
  // Latency is measured at half the measured rate, or at `latency_rate` messages/s when given.
  const halfRate = spec.latency_rate ?? max.deliveries_per_s / spec.n / 2;
  const start = now();
  mark("half");
  const sent = await meter.paced(halfRate, spec.latency_seconds);
  mark("half-end");
  const drained = await meter.drain();
  const elapsed = (now() - start) / 1000;
  meter.recording = false;
  return {
    ...max,
    half_rate_msgs_per_s: halfRate,
    half_rate_deliveries_per_s: (sent * spec.n) / elapsed,
    ...summarize(meter.latencies, meter.nLatencies),
    lag_p99_ms: summarize(Float64Array.from(meter.lags), meter.lags.length).p99_ms,
    undelivered: drained ? 0 : meter.sent - meter.completed,
    closed,
    publish_errors: publishErrors,
    mismatches: meter.mismatches,
    checked: meter.delivered,
    lost: meter.lost,
    duplicates: meter.duplicates,
    reordered: meter.reordered,
  };
}

/**
 * Hold `n` WebSocket connections, each subscribed to a topic (room) of its
 * own (`{topic}` in `url` is replaced by it, for servers whose URL names the
 * channel). With `publish_url` (`{topic}` replaced likewise), one message is
 * then POSTed to each topic, `publish_concurrency` at a time, and the time
 * from each POST's start to its subscriber's delivery is measured ("wake").
 */
export async function idle(spec, mark) {
  let closed = 0;
  const sent = new Float64Array(spec.n);
  const woken = new Float64Array(spec.n);
  let count = 0;
  let allWoken;
  const done = new Promise((resolve) => (allWoken = resolve));
  const onDelivery = (i) => {
    if (woken[i] || !sent[i]) return;
    woken[i] = now() - sent[i];
    if (++count === spec.n) allWoken();
  };
  const sockets = await openMany(spec.n, CONNECT_CONCURRENCY, (i) => {
    const topic = `${spec.topic}${i}`;
    return openWebSocket({ url: spec.url.replace("{topic}", topic), dialect: spec.dialect, topic, index: i,
                           onClose: () => closed++, onDelivery: () => onDelivery(i) });
  });
  await sleep(spec.settle * 1000);
  mark("held");
  await sleep(spec.hold * 1000);
  mark("end");
  const result = { connections: sockets.length, closed };
  if (spec.publish_url) {
    let next = 0;
    const start = now();
    const worker = async () => {
      while (next < spec.n) {
        const i = next++;
        sent[i] = now();
        await postJson(spec.publish_url.replace("{topic}", `${spec.topic}${i}`), payload(i + 1, 100));
      }
    };
    await Promise.all(Array.from({ length: spec.publish_concurrency ?? 16 }, worker));
    const published = now();
    await Promise.race([done, sleep(spec.wake_timeout_s * 1000)]);
    const summary = summarize(woken.filter((v) => v > 0), count);
    Object.assign(result, {
      wake_p50_ms: summary.p50_ms, wake_p99_ms: summary.p99_ms, wake_max_ms: summary.max_ms,
      woken: count, not_woken: spec.n - count, publish_s: (published - start) / 1000,
    });
  }
  for (const ws of sockets) ws.terminate();
  return result;
}

/** Store `count` messages in `topic` through the batch publish endpoint. */
export async function preload(spec, mark) {
  let next = 0;
  const start = now();
  mark("start");
  const worker = async () => {
    while (next < spec.count) {
      const first = next;
      next = Math.min(spec.count, next + spec.batch);
      const items = [];
      for (let seq = first + 1; seq <= next; seq++) items.push(`{"topic":"${spec.topic}","data":${payload(seq, spec.size)}}`);
      await postJson(spec.batch_url, `[${items.join(",")}]`);
    }
  };
  await Promise.all(Array.from({ length: spec.concurrency }, worker));
  mark("end");
  const seconds = (now() - start) / 1000;
  return { messages: spec.count, seconds, messages_per_s: spec.count / seconds };
}

/** Replay `count` stored messages from the start over one WebSocket subscription. */
export async function replayWs(spec, mark) {
  let got = 0;
  let done;
  const finished = new Promise((resolve) => (done = resolve));
  const start = now();
  mark("start");
  const ws = await openWebSocket({
    url: spec.url, dialect: "hubbub", topic: spec.topic, after: "start",
    onDelivery: () => { if (++got === spec.count) done(); },
    onClose: (code, reason) => done(new Error(`closed after ${got} messages: ${code} ${reason}`)),
  });
  const err = await finished;
  const seconds = (now() - start) / 1000;
  mark("end");
  ws.terminate();
  if (err) throw err;
  return { messages: got, seconds, messages_per_s: got / seconds };
}

const CURSOR_KEY = '"cursor":"';
const MESSAGE_KEY = Buffer.from('"offset":');

/** Replay `count` stored messages from the start by long polling, page after page. */
export async function replayPoll(spec, mark) {
  let got = 0;
  let cursor = "start";
  const start = now();
  mark("start");
  while (got < spec.count) {
    const res = await request(`${spec.poll_url}?after=${encodeURIComponent(cursor)}&limit=${spec.limit}&wait=${spec.wait}`);
    if (res.status !== 200) throw new Error(`poll answered ${res.status}: ${res.body}`);
    // The page's own cursor is its last key: {"messages":[...],"cursor":"..."}.
    const text = res.body.toString("latin1", Math.max(0, res.body.length - 200));
    const at = text.lastIndexOf(CURSOR_KEY) + CURSOR_KEY.length;
    cursor = text.slice(at, text.indexOf('"', at));
    let page = 0;
    for (let i = res.body.indexOf(MESSAGE_KEY); i !== -1; i = res.body.indexOf(MESSAGE_KEY, i + MESSAGE_KEY.length)) page++;
    if (page === 0) throw new Error(`an empty page after ${got} messages`);
    got += page;
  }
  const seconds = (now() - start) / 1000;
  mark("end");
  return { messages: got, seconds, messages_per_s: got / seconds };
}

export const MODES = { fanout, idle, preload, "replay-ws": replayWs, "replay-poll": replayPoll, upload };

/**
 * One tus upload of the file `file` to `endpoint` in PATCHes of `chunk` bytes,
 * one after the other on one keep-alive connection (tus appends in order).
 * The file is read into memory first, so the measured window holds the HTTP
 * requests only. Resolves with the throughput and the upload's final offset.
 */
export async function upload(spec, mark) {
  const data = await readFile(spec.file);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const tus = { "Tus-Resumable": "1.0.0" };
  const created = await tusRequest(agent, "POST", spec.endpoint, { ...tus, "Upload-Length": String(data.length) });
  if (created.status !== 201) throw new Error(`creation answered ${created.status}`);
  const url = new URL(created.headers.location, spec.endpoint).href;
  mark("start");
  const start = now();
  let offset = 0;
  while (offset < data.length) {
    const body = data.subarray(offset, Math.min(offset + spec.chunk, data.length));
    const r = await tusRequest(agent, "PATCH", url, {
      ...tus, "Upload-Offset": String(offset), "Content-Type": "application/offset+octet-stream",
      "Content-Length": String(body.length),
    }, body);
    if (r.status !== 204) throw new Error(`PATCH at ${offset} answered ${r.status}`);
    offset = Number(r.headers["upload-offset"]);
  }
  const seconds = (now() - start) / 1000;
  mark("end");
  agent.destroy();
  return { mb_per_s: data.length / 1e6 / seconds, seconds, offset, id: url.split("/").pop() };
}

function tusRequest(agent, method, url, headers, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent }, (res) => {
      res.resume();
      res.on("end", () => resolve({ status: res.statusCode, headers: res.headers }));
    });
    req.on("error", reject);
    req.end(body);
  });
}
