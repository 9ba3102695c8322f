// The fan-out meter: counts deliveries per subscriber, knows when a message
// has reached every subscriber, drives a publisher at the highest rate that
// keeps up (a window of messages in flight) or at a fixed rate, and records
// end-to-end latencies. It drives the SSE fan-out; fanout.c is the same meter
// in C, for fan-out over WebSockets.
//
// Theory of operation. Every delivery comes with its payload's "seq" (the
// client reads the number after each "seq": key) and is checked against the
// next one its subscriber expects, as fanout.c's account() does: a higher one
// counts the skipped messages as lost, a lower one is late (reordered) when
// that subscriber had a gap, a duplicate otherwise; a seq never sent is a
// mismatch. Message s has reached everyone when n subscribers have had it; a
// delivery's latency is now minus the send time recorded for message s. (A
// publisher POSTing over several connections, as the SSE one does, has no
// order between them, so there a late message is counted but not wrong.)
//
// Latencies are kept whole: every delivery's while recording (the array
// grows), each from its message's scheduled send in a paced phase, not from
// when it was written, so a publisher held up adds the wait to the messages
// behind it rather than hiding it; how late the writes were is kept too
// (`lags`), as fanout.c does.

const RING = 1 << 16;
const MASK = RING - 1;

export const now = () => performance.now();

/** A JSON payload of exactly `size` bytes carrying its sequence number and send time. */
export function payload(seq, size) {
  const head = `{"seq":${seq},"t":${Date.now()},"pad":"`;
  return head + "x".repeat(Math.max(0, size - head.length - 2)) + '"}';
}

/** The p-th percentile (0..100) of the first `n` values of a Float64Array, by nearest rank. */
export function percentile(sorted, n, p) {
  if (n === 0) return null;
  return sorted[Math.min(n - 1, Math.max(0, Math.ceil((p / 100) * n) - 1))];
}

export function summarize(values, n) {
  const sorted = values.subarray(0, n).sort();
  return {
    p50_ms: percentile(sorted, n, 50),
    p99_ms: percentile(sorted, n, 99),
    max_ms: n ? sorted[n - 1] : null,
    samples: n,
  };
}

export class Meter {
  /**
   * @param {number} n subscribers
   * @param {(seq: number) => void} publish sends message `seq`
   * @param {number} latencyCapacity latencies room is made for at first (it grows)
   */
  constructor(n, publish, latencyCapacity = 1 << 20) {
    this.n = n;
    this.publish = publish;
    this.counts = new Uint32Array(n); // deliveries to each subscriber while priming
    this.expect = new Float64Array(n); // the seq each subscriber should get next
    this.missing = new Float64Array(n); // seqs each subscriber skipped and may still get late
    this.priming = false;
    this.lost = 0;
    this.duplicates = 0;
    this.reordered = 0;
    this.reached = new Uint32Array(RING); // subscribers that have message c, at c & MASK
    this.sendTimes = new Float64Array(RING);
    this.latencies = new Float64Array(latencyCapacity);
    this.nLatencies = 0;
    this.lags = [];
    this.recording = false;
    this.sent = 0;
    this.completed = 0;
    this.delivered = 0;
    this.mismatches = 0;
    this.onProgress = null;
  }

  /** Subscriber `i` got message `seq`. */
  deliver(i, seq) {
    if (this.priming) {
      this.counts[i]++; // primers are seq 0, and counted only
      return;
    }
    this.delivered++;
    if (seq < 1 || seq > this.sent) {
      this.mismatches++;
      return;
    }
    if (seq === this.expect[i]) this.expect[i]++;
    else if (seq > this.expect[i]) {
      this.lost += seq - this.expect[i];
      this.missing[i] += seq - this.expect[i];
      this.expect[i] = seq + 1;
    } else if (this.missing[i] > 0) {
      this.missing[i]--;
      this.lost--;
      this.reordered++;
    } else {
      this.duplicates++;
      return;
    }
    const slot = seq & MASK;
    if (this.recording) {
      if (this.nLatencies === this.latencies.length) {
        const grown = new Float64Array(2 * this.latencies.length);
        grown.set(this.latencies);
        this.latencies = grown;
      }
      this.latencies[this.nLatencies++] = now() - this.sendTimes[slot];
    }
    if (++this.reached[slot] === this.n) {
      this.reached[slot] = 0;
      if (seq > this.completed) this.completed = seq; // in order: whoever has seq had every one before
      if (this.onProgress) this.onProgress();
    }
  }

  /** The next message, its clock started at `due` (the schedule's instant when paced). */
  send(due = now()) {
    const seq = ++this.sent;
    this.sendTimes[seq & MASK] = due;
    this.publish(seq);
  }

  /**
   * Resolves true once every message sent has reached every subscriber, false
   * when deliveries stopped for `stallMs` (or after `capMs` in all).
   */
  async drain(stallMs = 5000, capMs = 60000) {
    const deadline = now() + capMs;
    let last = this.delivered;
    let lastMove = now();
    while (this.completed !== this.sent) {
      const t = now();
      if (this.delivered !== last) [last, lastMove] = [this.delivered, t];
      if (t - lastMove > stallMs || t > deadline) return false;
      await sleep(10);
    }
    return true;
  }

  /**
   * Make sure every subscriber is live, then start counting from zero (as
   * fanout.c does). Primer messages (sent with seq 0 through `prime`) go out
   * until every subscriber has had one (a subscription only confirmed by a
   * first delivery, like an SSE stream, may take hold after the first ones);
   * then, with none on its way, one more that every subscriber must get, once.
   */
  async prime(prime, ms) {
    const deadline = now() + ms;
    this.priming = true;
    const none = () => this.counts.filter((c) => c === 0).length;
    while (none() && now() < deadline) {
      prime(0);
      await sleep(100);
    }
    if (none()) throw new Error(`subscribers not all live: ${none()} of ${this.n} got nothing`);
    for (;;) {
      await sleep(300); // no primer is still on its way
      const before = this.counts.slice();
      prime(0);
      const start = now();
      let behind = this.n, ahead = 0;
      while (behind && now() - start < 5000) {
        await sleep(5);
        [behind, ahead] = [0, 0];
        this.counts.forEach((c, i) => { behind += c === before[i]; ahead += c > before[i] + 1; });
      }
      if (!behind && !ahead) break;
      if (now() > deadline) throw new Error(`subscribers not all primed: ${behind} without the last primer, ${ahead} with more`);
    }
    this.priming = false;
    this.expect.fill(1);
    this.reached.fill(0);
    this.sent = this.completed = this.delivered = this.mismatches = 0;
  }

  /**
   * Publish as fast as the slowest subscriber keeps up: at most `window`
   * messages in flight. After `warmup` seconds, measures deliveries (and
   * messages that reached everyone) per second over `seconds`.
   */
  async windowed(window, warmup, seconds, mark) {
    const end = now() + (warmup + seconds) * 1000;
    this.onProgress = () => {
      while (this.sent - this.completed < window && now() < end) this.send();
    };
    this.onProgress();
    await sleep(warmup * 1000);
    const start = now();
    const [delivered, completed] = [this.delivered, this.completed];
    mark("start");
    await sleep(end - now());
    const elapsed = (now() - start) / 1000;
    const result = {
      deliveries_per_s: (this.delivered - delivered) / elapsed,
      messages_per_s: (this.completed - completed) / elapsed,
    };
    mark("end");
    this.onProgress = null;
    return result;
  }

  /**
   * Publish `rate` messages a second for `seconds`, recording every delivery's
   * latency from its message's scheduled send, and how late each write was.
   */
  async paced(rate, seconds) {
    this.recording = true;
    this.nLatencies = 0;
    this.lags = [];
    const total = Math.max(1, Math.round(rate * seconds));
    const interval = 1000 / rate;
    const first = this.sent;
    let next = now();
    while (this.sent - first < total) {
      if (this.sent - this.completed > RING / 2) throw new Error("subscribers fell too far behind the paced publisher");
      for (const t = now(); next <= t && this.sent - first < total; next += interval) {
        this.lags.push(t - next);
        this.send(next);
      }
      await sleep(next - now());
    }
    return total;
  }
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}
