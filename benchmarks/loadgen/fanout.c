/*
 * The WebSocket fan-out scenario's client: N subscribers on one topic, one
 * publisher; deliveries per second at the highest rate that keeps up, then
 * end-to-end latencies at half that rate and at fixed rates.
 *
 *   fanout DIALECT URL SUB_URLS TOPIC N SIZE WINDOW WARMUP_S SECONDS
 *          LATENCY_SECONDS LATENCY_RATES PACED_MIN TIMEOUT_S
 *   fanout check            (reads "SUBSCRIBER SEQ" lines: the sequence check alone)
 *
 * DIALECT is hubbub (docs/websocket.md), socketio (Engine.IO 4 over a
 * WebSocket, the peers' convention: "join" with an ack, "pub" broadcast to the
 * room) or raw (nchan: a subscriber is joined once upgraded, every text frame
 * is a message as published, and every frame the publisher sends is published).
 * URL is the publisher's ws:// URL; SUB_URLS is "-" (the same) or URLs
 * separated by commas, subscriber i connecting to the (i mod count)-th.
 * LATENCY_RATES are the paced phases' rates in messages per second, separated
 * by commas, each run for LATENCY_SECONDS, or longer when that would send
 * fewer than PACED_MIN messages (at 50 msg/s, 4 s would be 200 messages, and
 * the p99 of their deliveries the tail of two): 0 is half the measured rate (the
 * "half" phase); another rate is a fixed point ("at<RATE>"), the same for every
 * server, run only when it is at most FIXED_LOAD of the server's measured
 * maximum (its figures are then absent, and "at<RATE>_load" says why).
 *
 * Why C: at N = 1,000 a hub delivers millions of frames a second, and the
 * Node generator (modes.mjs, which still drives SSE fan-out) used nearly a
 * core of its own to take them from the kernel, so its own queueing showed
 * in the latencies it measured. Here a read of a socket costs one recv()
 * after epoll, and a frame a few comparisons.
 *
 * How it measures:
 * - Every delivery's "seq" is read (one memcmp at the place it was last
 *   found in that subscriber's frames, memmem otherwise) and checked against
 *   the next one that subscriber expects (account() below): a higher one
 *   counts the skipped messages as lost, a lower one is late (reordered) when
 *   that subscriber had a gap, a duplicate otherwise; a missing or never-sent
 *   seq is a mismatch. Message s has reached everyone when N subscribers have
 *   had it.
 * - Every latency sample of a paced phase is kept (the array grows), and the
 *   result says how many there were ("samples").
 * - A paced phase is open loop and its clock is the schedule: message k is
 *   due at start + k / rate, its latency runs from that instant, not from
 *   when it was actually written, so a publisher held up (by the server's
 *   back-pressure or by this process) adds the wait to every message behind
 *   it instead of hiding it (no coordinated omission). How late the writes
 *   were is reported too ("lag_p99_ms", "lag_max_ms").
 *
 * It speaks as main.mjs does, in JSON lines on stdout: {"mark": "start"} and
 * {"mark": "end"} around the measured window, {"mark": "half"} and
 * {"mark": "half-end"} around the half-rate phase, {"mark": "at500"} and
 * {"mark": "at500-end"} around a fixed-rate phase (each with "cpu_s", this
 * process's CPU time), then {"result": {...}} with the figures of
 * modes.mjs's fanout, or {"error": "..."} and exit status 1.
 *
 * A WebSocket client of RFC 6455 as far as the servers under test need: the
 * upgrade (its status line is checked, not the accept key), unmasked server
 * frames of up to MAX_FRAME bytes without fragmentation, pings answered,
 * client frames masked. Loopback only: URLs name an IPv4 address and a port.
 * Connections come from 127.0.0.2 to 127.0.0.17 in turn, as the Node clients.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

#define SOURCES 16
#define RING (1u << 16)
#define MASK (RING - 1)
#define CONNECT_CONCURRENCY 200
#define MAX_FRAME 65536
#define READ_SIZE (256 * 1024)
#define MAX_PHASES 8
/* A fixed rate is paced only up to this share of the measured maximum. */
#define FIXED_LOAD 0.9
#define HANDSHAKE_MS 15000.0

enum dialect { HUBBUB, SOCKETIO, RAW };
enum state { HEAD, JOINING, JOINED, GONE };

struct conn {
  int fd;
  int index;      /* subscriber index, or n for the publisher */
  enum state state;
  char *carry;    /* bytes of a frame (or the response head) not all read yet */
  size_t carried, carry_cap;
  char *out;      /* bytes not yet taken by the kernel */
  size_t out_len, out_cap;
  int want_out;   /* registered for EPOLLOUT */
  double opened;  /* when the upgrade was sent */
  size_t seq_at;  /* where "seq": was in this connection's last frame */
};

/* What the sequence check found, over every subscriber. */
struct tally {
  long lost, duplicates, reordered;
};

/* A growing array of samples (ms). */
struct samples {
  double *v;
  size_t len, cap;
};

/* -- the run's state ------------------------------------------------------- */

static enum dialect dialect;
static const char *topic;
static int n, size, window_size;
static struct conn *conns; /* n subscribers, then the publisher at [n] */
static int ep;
static double deadline; /* the whole run's */

static uint32_t *counts;   /* deliveries to each subscriber while priming */
static uint64_t *expect;   /* the seq each subscriber should get next */
static uint64_t *missing;  /* seqs each subscriber skipped and may still get late */
static struct tally tally;
static uint32_t reached[RING];
static double send_times[RING];
static struct samples latencies, lags;
static int recording, priming;
static uint64_t sent, completed, delivered;
static long mismatches, closed_count, publish_errors;
static int joined_count, opening;
static int topping_up; /* windowed phase: publish as messages complete */
static double window_end;
static int ending;

static void *grow(void *p, size_t *cap, size_t need) {
  if (need <= *cap) return p;
  size_t c = *cap ? *cap : 512;
  while (c < need) c *= 2;
  if (!(p = realloc(p, c))) fail("out of memory");
  *cap = c;
  return p;
}

static void add_sample(struct samples *s, double v) {
  if (s->len == s->cap) {
    s->cap = s->cap ? s->cap * 2 : 1 << 20;
    if (!(s->v = realloc(s->v, s->cap * sizeof *s->v))) fail("out of memory for %zu samples", s->cap);
  }
  s->v[s->len++] = v;
}

/* -- URLs and sockets ------------------------------------------------------ */

struct url {
  struct sockaddr_in addr;
  char authority[64];
  char target[512];
};

/* "ws://A.B.C.D:PORT/path?query" */
static void parse_url(const char *text, size_t len, struct url *u) {
  char host[64], buf[640];
  if (len >= sizeof buf) fail("URL too long");
  memcpy(buf, text, len);
  buf[len] = 0;
  if (strncmp(buf, "ws://", 5) != 0) fail("not a ws:// URL: %s", buf);
  const char *h = buf + 5, *colon = strchr(h, ':'), *slash = strchr(h, '/');
  if (!slash) slash = h + strlen(h);
  if (!colon || colon > slash || slash - h >= 64) fail("no host:port in %s", buf);
  memcpy(host, h, (size_t)(colon - h));
  host[colon - h] = 0;
  memcpy(u->authority, h, (size_t)(slash - h));
  u->authority[slash - h] = 0;
  snprintf(u->target, sizeof u->target, "%s", *slash ? slash : "/");
  int port = atoi(colon + 1);
  memset(&u->addr, 0, sizeof u->addr);
  u->addr.sin_family = AF_INET;
  u->addr.sin_port = htons((unsigned short)port);
  if (port <= 0 || inet_pton(AF_INET, host, &u->addr.sin_addr) != 1) fail("not an IPv4 address and port: %s", buf);
}

static void watch(struct conn *c, uint32_t events, int op) {
  struct epoll_event ev = {.events = events, .data.u32 = (uint32_t)c->index};
  if (epoll_ctl(ep, op, c->fd, &ev) < 0) fail("epoll_ctl: %s", strerror(errno));
}

/* Queue bytes for c's socket, writing what the kernel takes now. */
static void put(struct conn *c, const char *data, size_t len) {
  if (c->state == GONE) return;
  if (c->out_len == 0) {
    ssize_t w = send(c->fd, data, len, MSG_NOSIGNAL);
    if (w < 0 && errno != EAGAIN && errno != EINTR) return; /* the read side sees the close */
    if (w > 0) data += w, len -= (size_t)w;
    if (len == 0) return;
  }
  c->out = grow(c->out, &c->out_cap, c->out_len + len);
  memcpy(c->out + c->out_len, data, len);
  c->out_len += len;
  if (!c->want_out) {
    c->want_out = 1;
    watch(c, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
  }
}

static void flush_out(struct conn *c) {
  while (c->out_len > 0) {
    ssize_t w = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      if (errno != EAGAIN) c->out_len = 0;
      break;
    }
    memmove(c->out, c->out + w, c->out_len - (size_t)w);
    c->out_len -= (size_t)w;
  }
  if (c->out_len == 0 && c->want_out) {
    c->want_out = 0;
    watch(c, EPOLLIN, EPOLL_CTL_MOD);
  }
}

/* -- client frames (masked) ------------------------------------------------ */

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint32_t next_mask(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (uint32_t)rng;
}

static void send_frame(struct conn *c, int opcode, const char *data, size_t len) {
  char frame[MAX_FRAME + 14];
  size_t h = 0;
  if (len > MAX_FRAME) fail("client frame too long");
  frame[h++] = (char)(0x80 | opcode);
  if (len < 126) frame[h++] = (char)(0x80 | len);
  else {
    frame[h++] = (char)(0x80 | 126);
    frame[h++] = (char)(len >> 8);
    frame[h++] = (char)len;
  }
  uint32_t m = next_mask();
  unsigned char key[4];
  memcpy(key, &m, 4);
  memcpy(frame + h, key, 4);
  h += 4;
  for (size_t i = 0; i < len; i++) frame[h + i] = (char)(data[i] ^ key[i & 3]);
  put(c, frame, h + len);
}

static void send_text(struct conn *c, const char *text) { send_frame(c, 0x1, text, strlen(text)); }

/* -- the meter (meter.mjs) --------------------------------------------------- */

static void publish(uint64_t seq) {
  static char body[MAX_FRAME];
  char head[160];
  struct timespec wall;
  clock_gettime(CLOCK_REALTIME, &wall);
  int hl = snprintf(head, sizeof head, "{\"seq\":%llu,\"t\":%lld,\"pad\":\"", (unsigned long long)seq,
                    (long long)wall.tv_sec * 1000 + wall.tv_nsec / 1000000);
  int pad = size - hl - 2 > 0 ? size - hl - 2 : 0;
  int at = dialect == HUBBUB   ? snprintf(body, sizeof body, "{\"op\":\"pub\",\"id\":%llu,\"topic\":\"%s\",\"data\":",
                                          (unsigned long long)seq, topic)
           : dialect == SOCKETIO ? snprintf(body, sizeof body, "42[\"pub\",")
                                 : 0;
  memcpy(body + at, head, (size_t)hl);
  at += hl;
  memset(body + at, 'x', (size_t)pad);
  at += pad;
  const char *tail = dialect == HUBBUB ? "\"}}" : dialect == SOCKETIO ? "\"}]" : "\"}";
  memcpy(body + at, tail, strlen(tail));
  at += (int)strlen(tail);
  send_frame(&conns[n], 0x1, body, (size_t)at);
}

/* The next message, its clock started at `due` (ms): the schedule's instant in a paced phase. */
static void send_next(double due) {
  uint64_t seq = ++sent;
  send_times[seq & MASK] = due;
  publish(seq);
}

static void top_up(void) {
  for (double t; sent - completed < (uint64_t)window_size && (t = now_ms()) < window_end;) send_next(t);
}

/*
 * The sequence check of one delivery: `seq` came to a subscriber that
 * expected *next and had *gaps messages skipped so far. Returns 1 when the
 * delivery is a message new to it (counted), 0 for a duplicate (ignored).
 * Servers deliver a topic in order, so a seq above the expected one means the
 * ones between were lost (unless they come late: then they were reordered).
 */
static int account(uint64_t *next, uint64_t *gaps, uint64_t seq, struct tally *t) {
  if (seq == *next) {
    ++*next;
    return 1;
  }
  if (seq > *next) {
    t->lost += (long)(seq - *next);
    *gaps += seq - *next;
    *next = seq + 1;
    return 1;
  }
  if (*gaps > 0) { /* one of the skipped ones after all (or a duplicate of an earlier one: not told apart) */
    --*gaps;
    t->lost--;
    t->reordered++;
    return 1;
  }
  t->duplicates++;
  return 0;
}

/* The "seq" of a frame (0 when absent), looked for first where it was in c's last frame. */
static uint64_t read_seq(struct conn *c, const char *frame, size_t len) {
  static const char key[] = "\"seq\":";
  const char *at = frame + c->seq_at;
  if (c->seq_at + sizeof key > len || memcmp(at, key, sizeof key - 1) != 0) {
    if (!(at = memmem(frame, len, key, sizeof key - 1))) return 0;
    c->seq_at = (size_t)(at - frame);
  }
  uint64_t seq = 0;
  for (at += sizeof key - 1; at < frame + len && *at >= '0' && *at <= '9'; at++) seq = seq * 10 + (uint64_t)(*at - '0');
  return seq;
}

static void deliver(struct conn *c, const char *frame, size_t len, double t) {
  int i = c->index;
  if (priming) { /* primers are seq 0, and counted only */
    counts[i]++;
    return;
  }
  delivered++;
  uint64_t seq = read_seq(c, frame, len);
  if (seq == 0 || seq > sent) {
    mismatches++;
    return;
  }
  if (!account(&expect[i], &missing[i], seq, &tally)) return;
  uint32_t slot = (uint32_t)(seq & MASK);
  if (recording) add_sample(&latencies, t - send_times[slot]);
  if (++reached[slot] == (uint32_t)n) {
    reached[slot] = 0;
    if (seq > completed) completed = seq; /* in order: whoever has seq had every one before */
    if (topping_up) top_up();
  }
}

/* -- the dialects ---------------------------------------------------------- */

static int has(const char *frame, size_t len, const char *needle) {
  return memmem(frame, len, needle, strlen(needle)) != NULL;
}

/* After the upgrade: 1 when c may already count as joined. */
static int start(struct conn *c) {
  if (dialect == SOCKETIO) return 0;
  if (dialect == RAW) return 1; /* subscribed by its URL */
  if (c->index == n) return 1; /* the publisher subscribes to nothing */
  char sub[256];
  snprintf(sub, sizeof sub, "{\"op\":\"sub\",\"id\":1,\"topics\":[\"%s\"]}", topic);
  send_text(c, sub);
  return 0;
}

/* A frame before joining: 1 once joined; fails when refused. */
static int step(struct conn *c, const char *f, size_t len) {
  if (dialect == HUBBUB) {
    if (has(f, len, "\"op\":\"ok\"") && has(f, len, "\"id\":1")) return 1;
    fail("subscription refused: %.*s", (int)(len < 200 ? len : 200), f);
  }
  if (len >= 1 && f[0] == '0') send_text(c, "40");
  else if (len >= 2 && f[0] == '4' && f[1] == '0') {
    if (c->index == n) return 1;
    char join[256];
    snprintf(join, sizeof join, "421[\"join\",\"%s\"]", topic);
    send_text(c, join);
  } else if (len >= 3 && memcmp(f, "431", 3) == 0) return 1;
  else if (len == 1 && f[0] == '2') send_text(c, "3");
  else if (len >= 2 && f[0] == '4' && f[1] == '4') fail("connection refused: %.*s", (int)(len < 200 ? len : 200), f);
  return 0;
}

/* A frame once joined. */
static void on_frame(struct conn *c, const char *f, size_t len, double t) {
  if (c->index == n) { /* the publisher: hubbub's replies, an "err" counts as a failed publish */
    if (dialect == HUBBUB && len > 7 && f[7] == 'e') publish_errors++;
    else if (dialect == SOCKETIO && len == 1 && f[0] == '2') send_text(c, "3");
    return;
  }
  if (dialect == HUBBUB) { /* '{"op":"' is 7 bytes; only msg starts with m */
    if (len > 7 && f[7] == 'm') deliver(c, f, len, t);
  } else if (dialect == RAW) deliver(c, f, len, t);
  else if (len >= 2 && f[0] == '4' && f[1] == '2') deliver(c, f, len, t);
  else if (len == 1 && f[0] == '2') send_text(c, "3");
}

/* -- connections ----------------------------------------------------------- */

static void lose(struct conn *c, const char *why) {
  if (c->state == GONE) return;
  if (c->state != JOINED) fail("connection %d closed during the handshake: %s", c->index, why);
  c->state = GONE;
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  if (!ending) closed_count++;
}

static void joined(struct conn *c) {
  c->state = JOINED;
  joined_count++;
  opening--;
}

/* The frames in buf[0..len); returns how many bytes were used (whole frames). */
static size_t frames(struct conn *c, const char *buf, size_t len, double t) {
  size_t at = 0;
  while (c->state != GONE && len - at >= 2) {
    const unsigned char *h = (const unsigned char *)buf + at;
    size_t hl = 2, pl = h[1] & 0x7f;
    if (h[1] & 0x80) fail("a masked frame from the server");
    if (!(h[0] & 0x80)) fail("a fragmented frame from the server (not supported)");
    if (pl == 126) {
      if (len - at < 4) break;
      pl = (size_t)h[2] << 8 | h[3];
      hl = 4;
    } else if (pl == 127) {
      if (len - at < 10) break;
      pl = 0;
      for (int k = 2; k < 10; k++) pl = pl << 8 | h[k];
      hl = 10;
    }
    if (pl > MAX_FRAME) fail("a frame of %zu bytes (at most %d)", pl, MAX_FRAME);
    if (len - at < hl + pl) break;
    const char *p = buf + at + hl;
    at += hl + pl;
    switch (h[0] & 0x0f) {
      case 0x1:
      case 0x2:
        if (c->state == JOINED) on_frame(c, p, pl, t);
        else if (step(c, p, pl)) joined(c);
        break;
      case 0x8: lose(c, "close frame"); break;
      case 0x9: send_frame(c, 0xa, p, pl); break;
      case 0xa: break;
      default: fail("an unknown opcode %d", h[0] & 0x0f);
    }
  }
  return at;
}

/* The response head in c->carry: checks the upgrade and returns its length, or 0 while incomplete. */
static size_t head(struct conn *c) {
  const char *end = memmem(c->carry, c->carried, "\r\n\r\n", 4);
  if (!end) {
    if (c->carried > 16384) fail("an upgrade response head over 16 KB");
    return 0;
  }
  if (c->carried < 12 || memcmp(c->carry, "HTTP/1.1 101", 12) != 0) {
    int line = (int)(strchr(c->carry, '\r') ? strchr(c->carry, '\r') - c->carry : 80);
    fail("the upgrade was refused: %.*s", line < 200 ? line : 200, c->carry);
  }
  return (size_t)(end - c->carry) + 4;
}

static char readbuf[READ_SIZE + MAX_FRAME + 16];

static void readable(struct conn *c) {
  /* What is carried goes before the new bytes, so frames are parsed in place. */
  size_t have = c->carried;
  if (have) memcpy(readbuf, c->carry, have);
  ssize_t r = recv(c->fd, readbuf + have, READ_SIZE, 0);
  if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (r <= 0) {
    lose(c, r == 0 ? "closed by the server" : strerror(errno));
    return;
  }
  double t = now_ms();
  size_t len = have + (size_t)r, used = 0;
  if (c->state == HEAD) {
    c->carry = grow(c->carry, &c->carry_cap, len + 1);
    memcpy(c->carry, readbuf, len);
    c->carry[len] = 0;
    c->carried = len;
    size_t hl = head(c);
    if (!hl) return;
    c->state = JOINING;
    if (start(c)) joined(c);
    used = hl;
  }
  used += frames(c, readbuf + used, len - used, t);
  c->carried = len - used;
  if (c->carried) {
    c->carry = grow(c->carry, &c->carry_cap, c->carried + 1);
    memmove(c->carry, readbuf + used, c->carried);
  }
}

static void open_conn(int i, const struct url *u, const char *protocol) {
  struct conn *c = &conns[i];
  c->index = i;
  c->state = HEAD;
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  if (c->fd < 0) fail("socket: %s (raise the open-file limit)", strerror(errno));
  struct sockaddr_in from = {.sin_family = AF_INET};
  from.sin_addr.s_addr = htonl(0x7f000002 + (uint32_t)(i % SOURCES));
  if (bind(c->fd, (struct sockaddr *)&from, sizeof from) < 0) fail("bind: %s", strerror(errno));
  if (connect(c->fd, (const struct sockaddr *)&u->addr, sizeof u->addr) < 0) fail("connect: %s", strerror(errno));
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  fcntl(c->fd, F_SETFL, O_NONBLOCK);
  watch(c, EPOLLIN, EPOLL_CTL_ADD);
  char req[1024];
  int rl = snprintf(req, sizeof req,
                    "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n%s%s%s\r\n",
                    u->target, u->authority, protocol ? "Sec-WebSocket-Protocol: " : "", protocol ? protocol : "",
                    protocol ? "\r\n" : "");
  c->opened = now_ms();
  opening++;
  put(c, req, (size_t)rl);
}

/* -- the event loop -------------------------------------------------------- */

/* Handle what is ready, waiting at most until `until` (ms, monotonic). */
static void run_once(double until) {
  static struct epoll_event events[1024];
  double t = now_ms();
  if (t > deadline) fail("gave up after the run's time limit");
  double wait = until - t;
  if (wait < 0) wait = 0;
  struct timespec ts = {(time_t)(wait / 1000), (long)(fmod(wait, 1000.0) * 1e6)};
  int k = epoll_pwait2(ep, events, 1024, &ts, NULL);
  if (k < 0 && errno != EINTR) fail("epoll_pwait2: %s", strerror(errno));
  for (int j = 0; j < k; j++) {
    struct conn *c = &conns[events[j].data.u32];
    if (c->state == GONE) continue;
    if (events[j].events & EPOLLOUT) flush_out(c);
    if (events[j].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) readable(c);
  }
}

static void run_until(double until) {
  do run_once(until);
  while (now_ms() < until);
}

/* Every message sent has reached every subscriber (1), or deliveries stalled (0). */
static int drain(void) {
  double cap = now_ms() + 60000, last_move = now_ms();
  uint64_t last = delivered;
  while (completed != sent) {
    double t = now_ms();
    if (delivered != last) last = delivered, last_move = t;
    if (t - last_move > 5000 || t > cap) return 0;
    run_until(t + 10);
  }
  return 1;
}

/* -- the paced phases and the result ------------------------------------------ */

static char out[16384];
static size_t out_len;

static void out_add(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(out + out_len, sizeof out - out_len, fmt, ap);
  va_end(ap);
  if (k < 0 || (size_t)k >= sizeof out - out_len) fail("the result is too long");
  out_len += (size_t)k;
}

/* p50, p99, max of s (sorted in place) as "<prefix>p50_ms" and so on. */
static void out_latencies(const char *prefix, struct samples *s) {
  qsort(s->v, s->len, sizeof *s->v, by_value);
  if (s->len)
    out_add("\"%sp50_ms\": %.3f, \"%sp99_ms\": %.3f, \"%smax_ms\": %.3f, ", prefix, percentile(s->v, (long)s->len, 50),
            prefix, percentile(s->v, (long)s->len, 99), prefix, s->v[s->len - 1]);
  else
    out_add("\"%sp50_ms\": null, \"%sp99_ms\": null, \"%smax_ms\": null, ", prefix, prefix, prefix);
  out_add("\"%ssamples\": %zu, ", prefix, s->len);
}

/*
 * One paced phase (open loop): `rate` messages/s for `seconds`, 0 meaning
 * half of `max_rate` (the measured maximum), then a drain. Adds its figures
 * to the result; returns 0 when deliveries stopped (the run ends there).
 */
static int paced(double rate, double seconds, long min_messages, double max_rate) {
  int half = rate == 0;
  char name[64], prefix[72], end[72];
  if (half) rate = max_rate / 2;
  snprintf(name, sizeof name, half ? "half" : "at%g", rate);
  snprintf(prefix, sizeof prefix, half ? "" : "%s_", name);
  snprintf(end, sizeof end, "%s-end", name);
  if (!half && rate > FIXED_LOAD * max_rate) { /* beyond what this server keeps up with */
    out_add("\"%sload\": %.4f, ", prefix, rate / max_rate);
    return 1;
  }
  long total = lround(rate * seconds);
  if (total < min_messages) total = min_messages;
  if (total < 1) total = 1;
  double interval = 1000 / rate, p0 = now_ms(), due = p0;
  uint64_t first = sent;
  latencies.len = lags.len = 0;
  recording = 1;
  mark(name);
  while (sent - first < (uint64_t)total) {
    if (sent - completed > RING / 2) fail("subscribers fell too far behind the paced publisher at %g msg/s", rate);
    for (double t = now_ms(); due <= t && sent - first < (uint64_t)total; due += interval) {
      add_sample(&lags, t - due);
      send_next(due);
    }
    run_until(due);
  }
  mark(end);
  int drained = drain();
  double paced_s = (now_ms() - p0) / 1000;
  recording = 0;
  if (half)
    out_add("\"half_rate_msgs_per_s\": %.3f, \"half_rate_deliveries_per_s\": %.1f, ", rate, (double)total * n / paced_s);
  else
    out_add("\"%sload\": %.4f, \"%sdeliveries_per_s\": %.1f, ", prefix, rate / max_rate, prefix,
            (double)total * n / paced_s);
  out_latencies(prefix, &latencies);
  qsort(lags.v, lags.len, sizeof *lags.v, by_value);
  out_add("\"%slag_p99_ms\": %.3f, \"%slag_max_ms\": %.3f, ", prefix, percentile(lags.v, (long)lags.len, 99), prefix,
          lags.v[lags.len - 1]);
  return drained;
}

/* `fanout check`: the sequence check alone, fed "SUBSCRIBER SEQ" lines on stdin (subscribers 0-999). */
static int check_sequences(void) {
  static uint64_t next[1000], gaps[1000];
  unsigned long long seq;
  int i;
  long counted = 0;
  for (int k = 0; k < 1000; k++) next[k] = 1;
  while (scanf("%d %llu", &i, &seq) == 2)
    if (i >= 0 && i < 1000) counted += account(&next[i], &gaps[i], seq, &tally);
  printf("{\"counted\": %ld, \"lost\": %ld, \"duplicates\": %ld, \"reordered\": %ld}\n", counted, tally.lost,
         tally.duplicates, tally.reordered);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "check") == 0) return check_sequences();
  if (argc != 14)
    fail("usage: fanout DIALECT URL SUB_URLS TOPIC N SIZE WINDOW WARMUP_S SECONDS LATENCY_SECONDS "
         "LATENCY_RATES PACED_MIN TIMEOUT_S");
  if (strcmp(argv[1], "hubbub") == 0) dialect = HUBBUB;
  else if (strcmp(argv[1], "socketio") == 0) dialect = SOCKETIO;
  else if (strcmp(argv[1], "raw") == 0) dialect = RAW;
  else fail("unknown dialect %s (hubbub, socketio, raw)", argv[1]);
  topic = argv[4];
  n = atoi(argv[5]);
  size = atoi(argv[6]);
  window_size = atoi(argv[7]);
  double warmup = atof(argv[8]), seconds = atof(argv[9]), latency_seconds = atof(argv[10]);
  double rates[MAX_PHASES], timeout_s = atof(argv[13]);
  long paced_min = atol(argv[12]);
  int n_rates = 0;
  for (char *p = argv[11], *e; *p; p = *e == ',' ? e + 1 : e) {
    rates[n_rates] = strtod(p, &e);
    if (e == p || rates[n_rates] < 0 || (*e && *e != ',') || ++n_rates == MAX_PHASES) fail("bad arguments");
  }
  if (n <= 0 || size < 0 || size > 60000 || window_size <= 0 || window_size > (int)RING / 4 || seconds <= 0 ||
      latency_seconds <= 0 || n_rates == 0 || paced_min < 0 || timeout_s <= 0 || strlen(topic) > 200 || strpbrk(topic, "\"\\"))
    fail("bad arguments");
  deadline = now_ms() + timeout_s * 1000;

  struct url pub_url, *sub_urls;
  int n_urls = 1;
  parse_url(argv[2], strlen(argv[2]), &pub_url);
  if (strcmp(argv[3], "-") == 0) sub_urls = &pub_url;
  else {
    for (const char *p = argv[3]; (p = strchr(p, ',')); p++) n_urls++;
    if (!(sub_urls = calloc((size_t)n_urls, sizeof *sub_urls))) fail("out of memory");
    const char *p = argv[3];
    for (int k = 0; k < n_urls; k++) {
      const char *e = strchr(p, ',');
      size_t l = e ? (size_t)(e - p) : strlen(p);
      parse_url(p, l, &sub_urls[k]);
      p += l + 1;
    }
  }
  const char *protocol = dialect == HUBBUB ? "hubbub.v1.json" : NULL;

  conns = calloc((size_t)n + 1, sizeof *conns);
  counts = calloc((size_t)n, sizeof *counts);
  expect = calloc((size_t)n, sizeof *expect);
  missing = calloc((size_t)n, sizeof *missing);
  if (!conns || !counts || !expect || !missing) fail("out of memory");
  if ((ep = epoll_create1(0)) < 0) fail("epoll_create1: %s", strerror(errno));

  /* Subscribers, CONNECT_CONCURRENCY handshakes at a time; then the publisher. */
  int next = 0;
  while (joined_count < n) {
    while (next < n && opening < CONNECT_CONCURRENCY) {
      open_conn(next, &sub_urls[next % n_urls], protocol);
      next++;
    }
    run_until(now_ms() + 5);
    for (int i = 0; i < next; i++)
      if (conns[i].state != JOINED && now_ms() - conns[i].opened > HANDSHAKE_MS)
        fail("subscriber %d not joined after %.0f s", i, HANDSHAKE_MS / 1000);
  }
  open_conn(n, &pub_url, protocol);
  double t0 = now_ms();
  while (conns[n].state != JOINED) {
    if (now_ms() - t0 > HANDSHAKE_MS) fail("the publisher not ready after %.0f s", HANDSHAKE_MS / 1000);
    run_until(now_ms() + 5);
  }

  /* Prime: primers (seq 0) until every subscriber has had one (a subscription
     may take hold a moment after its handshake, and miss the first ones);
     then, with none on its way, one more that every subscriber must get, and
     once only: what comes next to any subscriber is seq 1. */
  double prime_end = now_ms() + 15000;
  int none = n;
  priming = 1;
  while (none && now_ms() < prime_end) {
    publish(0);
    run_until(now_ms() + 100);
    none = 0;
    for (int i = 0; i < n; i++) none += counts[i] == 0;
  }
  if (none) fail("subscribers not all live: %d of %d got nothing", none, n);
  uint32_t *before = malloc((size_t)n * sizeof *before);
  if (!before) fail("out of memory");
  for (;;) {
    run_until(now_ms() + 300); /* no primer is still on its way */
    memcpy(before, counts, (size_t)n * sizeof *counts);
    publish(0);
    double t0 = now_ms();
    int behind = n, ahead = 0;
    while (behind && now_ms() - t0 < 5000) {
      run_until(now_ms() + 5);
      behind = ahead = 0;
      for (int i = 0; i < n; i++) behind += counts[i] == before[i], ahead += counts[i] > before[i] + 1;
    }
    if (!behind && !ahead) break;
    if (now_ms() > prime_end) fail("subscribers not all primed: %d without the last primer, %d with more", behind, ahead);
  }
  free(before);
  priming = 0;
  for (int i = 0; i < n; i++) expect[i] = 1;

  /* Flat out: at most WINDOW messages in flight. */
  window_end = now_ms() + (warmup + seconds) * 1000;
  topping_up = 1;
  top_up();
  run_until(now_ms() + warmup * 1000);
  double w0 = now_ms();
  uint64_t d0 = delivered, c0 = completed;
  mark("start");
  run_until(window_end);
  double elapsed = (now_ms() - w0) / 1000;
  double deliveries_per_s = (double)(delivered - d0) / elapsed;
  double messages_per_s = (double)(completed - c0) / elapsed;
  mark("end");
  topping_up = 0;
  if (!drain()) fail("deliveries stopped with %llu messages in flight", (unsigned long long)(sent - completed));
  /* No rate to pace at (and a paced phase would wait forever between messages). */
  if (deliveries_per_s <= 0) fail("no delivery in the %g s measured window: no rate to pace at", elapsed);

  out_add("{\"result\": {\"deliveries_per_s\": %.1f, \"messages_per_s\": %.1f, ", deliveries_per_s, messages_per_s);
  int drained = 1;
  /* The maximum in messages per second: deliveries per subscriber (as meter.mjs). */
  for (int k = 0; k < n_rates && drained; k++) drained = paced(rates[k], latency_seconds, paced_min, deliveries_per_s / n);
  ending = 1;
  out_add("\"undelivered\": %llu, \"closed\": %ld, \"publish_errors\": %ld, \"checked\": %llu, \"lost\": %ld, "
          "\"duplicates\": %ld, \"reordered\": %ld, \"mismatches\": %ld}}\n",
          drained ? 0ULL : (unsigned long long)(sent - completed), closed_count, publish_errors,
          (unsigned long long)delivered, tally.lost, tally.duplicates, tally.reordered, mismatches);
  fputs(out, stdout);
  return 0;
}
