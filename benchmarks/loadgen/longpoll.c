/*
 * The long-poll scenario's client: N long polls waiting at once, then one
 * publish; how long until each poll has its answer.
 *
 *   longpoll POLL_URL PUBLISH_URL N SIZE SETTLE_S TIMEOUT_MS
 *
 * Why C: ten thousand answers arrive within a tenth of a second. Node takes
 * 11 to 14 us to take each one from the kernel to a callback, so the last
 * answer would wait on the generator rather than on the server. Here an
 * answer costs one read() after epoll: about 2 us.
 *
 * Speaks as main.mjs does, in JSON lines on stdout: {"mark": "start"} just
 * before the publish, {"mark": "end"} once every poll is answered (or the
 * time is up), then {"result": {...}} with the same figures as the Node
 * modes (p50_ms, p99_ms, max_ms, samples, answered, early, failed, waiting),
 * or {"error": "..."} and exit status 1.
 *
 * A poll's latency is from just before the publish is written to the return
 * of the epoll_wait() that reported its first bytes. It counts as answered
 * once its answer starts with "HTTP/1.1 200" and holds the payload's marker
 * ("seq":); any other answer, or a connection closed first, is failed; an
 * answer before the publish is early. Loopback only: the URLs name an IPv4
 * address and a port. Connections come from 127.0.0.2 to 127.0.0.17 in turn
 * (as the Node clients do), so ten thousand of them fit the ephemeral ports.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

#define SOURCES 16
#define KEEP 4096 /* bytes of an answer kept while looking for the marker */
#define PUBLISHER UINT32_MAX

static const char MARKER[] = "\"seq\":";
static const char OK[] = "HTTP/1.1 200";

struct poll {
  int fd;
  int state; /* 0 waiting, 1 answered, 2 failed, 3 early */
  size_t len;
  char *seen; /* the answer so far, until the marker shows */
};

/* "http://A.B.C.D:PORT/path?query" -> address, "A.B.C.D:PORT" and the request target. */
static void parse_url(const char *url, struct sockaddr_in *addr, char authority[64], const char **target) {
  char host[64];
  int port;
  if (strncmp(url, "http://", 7) != 0) fail("not an http:// URL: %s", url);
  const char *h = url + 7, *colon = strchr(h, ':'), *slash = strchr(h, '/');
  if (!colon || !slash || colon > slash || slash - h >= 64) fail("no host:port in %s", url);
  memcpy(host, h, colon - h);
  host[colon - h] = 0;
  memcpy(authority, h, slash - h);
  authority[slash - h] = 0;
  port = atoi(colon + 1);
  memset(addr, 0, sizeof *addr);
  addr->sin_family = AF_INET;
  addr->sin_port = htons((unsigned short)port);
  if (port <= 0 || inet_pton(AF_INET, host, &addr->sin_addr) != 1) fail("not an IPv4 address and port: %s", url);
  *target = slash;
}

static int open_to(const struct sockaddr_in *to, int index) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) fail("socket: %s", strerror(errno));
  struct sockaddr_in from = {.sin_family = AF_INET};
  from.sin_addr.s_addr = htonl(0x7f000002 + (uint32_t)(index % SOURCES));
  if (bind(fd, (struct sockaddr *)&from, sizeof from) < 0) fail("bind: %s", strerror(errno));
  if (connect(fd, (const struct sockaddr *)to, sizeof *to) < 0) fail("connect: %s", strerror(errno));
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

static void send_all(int fd, const char *data, size_t len) {
  while (len > 0) {
    ssize_t w = write(fd, data, len);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) fail("write: %s", strerror(errno));
    data += w;
    len -= (size_t)w;
  }
}

/* Reads what poll p has; returns 1 when its answer is complete (or failed). */
static int take(struct poll *p, char *buf, size_t cap) {
  ssize_t r = read(p->fd, buf, cap);
  if (r < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
  if (r <= 0) return -1; /* closed (or reset) before the answer */
  const char *all = buf;
  size_t len = (size_t)r;
  if (p->seen || !memmem(buf, len, MARKER, sizeof MARKER - 1)) {
    if (!p->seen && !(p->seen = malloc(KEEP))) fail("out of memory");
    size_t n = len < KEEP - p->len ? len : KEEP - p->len;
    memcpy(p->seen + p->len, buf, n);
    p->len += n;
    all = p->seen;
    len = p->len;
    if (!memmem(all, len, MARKER, sizeof MARKER - 1)) return len == KEEP ? -1 : 0;
  }
  return len >= sizeof OK - 1 && memcmp(all, OK, sizeof OK - 1) == 0 ? 1 : -1;
}

int main(int argc, char **argv) {
  if (argc != 7) fail("usage: longpoll POLL_URL PUBLISH_URL N SIZE SETTLE_S TIMEOUT_MS");
  struct sockaddr_in poll_addr, pub_addr;
  const char *poll_target, *pub_target;
  char poll_host[64], pub_host[64];
  parse_url(argv[1], &poll_addr, poll_host, &poll_target);
  parse_url(argv[2], &pub_addr, pub_host, &pub_target);
  int n = atoi(argv[3]), size = atoi(argv[4]);
  double settle = atof(argv[5]), timeout = atof(argv[6]);
  if (n <= 0 || size < 0 || size > 65536) fail("bad N or SIZE");

  struct poll *polls = calloc((size_t)n, sizeof *polls);
  double *latencies = malloc((size_t)n * sizeof *latencies);
  static char buf[65536];
  char request[2048];
  int rl = snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", poll_target, poll_host);
  if (!polls || !latencies || rl >= (int)sizeof request) fail("out of memory, or URL too long");
  int ep = epoll_create1(0);
  for (int i = 0; i < n; i++) {
    polls[i].fd = open_to(&poll_addr, i);
    send_all(polls[i].fd, request, (size_t)rl);
    fcntl(polls[i].fd, F_SETFL, O_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, polls[i].fd, &ev) < 0) fail("epoll_ctl: %s", strerror(errno));
  }
  int pub = open_to(&pub_addr, n);
  struct epoll_event pev = {.events = EPOLLIN, .data.u32 = PUBLISHER};
  epoll_ctl(ep, EPOLL_CTL_ADD, pub, &pev);

  /* The payload: {"seq":1,"t":MS,"pad":"xx..."} of exactly SIZE bytes. */
  char body[65600];
  int hl = snprintf(body, sizeof body, "{\"seq\":1,\"t\":%.0f,\"pad\":\"", now_ms());
  int pad = size - hl - 2 > 0 ? size - hl - 2 : 0;
  memset(body + hl, 'x', (size_t)pad);
  memcpy(body + hl + pad, "\"}", 3);
  char publish[66000];
  int pl = snprintf(publish, sizeof publish,
                    "POST %s HTTP/1.1\r\nHost: %s\r\ncontent-type: application/json\r\n"
                    "content-length: %zu\r\n\r\n%s", pub_target, pub_host, strlen(body), body);

  struct timespec pause = {(time_t)settle, (long)((settle - (time_t)settle) * 1e9)};
  nanosleep(&pause, NULL); /* the server reads and parks each request */

  int answered = 0, failed = 0, early = 0, published = 0;
  struct epoll_event events[1024];
  /* Anything here already came before the publish. */
  for (int k; (k = epoll_wait(ep, events, 1024, 0)) > 0;) {
    for (int j = 0; j < k; j++) {
      if (events[j].data.u32 == PUBLISHER) fail("the publish connection spoke first");
      struct poll *p = &polls[events[j].data.u32];
      int got = p->state ? 0 : take(p, buf, sizeof buf);
      if (got != 0) {
        p->state = 3;
        early++;
        epoll_ctl(ep, EPOLL_CTL_DEL, p->fd, NULL);
      }
    }
  }

  mark("start");
  double t0 = now_ms();
  send_all(pub, publish, (size_t)pl);
  while (answered + failed + early < n || !published) {
    double left = timeout - (now_ms() - t0);
    if (left <= 0) break;
    int k = epoll_wait(ep, events, 1024, (int)ceil(left));
    double at = now_ms() - t0;
    if (k < 0 && errno != EINTR) fail("epoll_wait: %s", strerror(errno));
    for (int j = 0; j < k; j++) {
      if (events[j].data.u32 == PUBLISHER) {
        ssize_t r = read(pub, buf, sizeof buf - 1);
        if (r <= 0) fail("the publish connection closed without an answer");
        buf[r] = 0;
        if (strncmp(buf, "HTTP/1.1 2", 10) != 0) fail("the publish was answered: %.80s", buf);
        published = 1;
        epoll_ctl(ep, EPOLL_CTL_DEL, pub, NULL);
        continue;
      }
      struct poll *p = &polls[events[j].data.u32];
      if (p->state) continue;
      int got = take(p, buf, sizeof buf);
      if (got == 0) continue;
      if (got > 0) {
        p->state = 1;
        latencies[answered++] = at;
      } else {
        p->state = 2;
        failed++;
      }
      epoll_ctl(ep, EPOLL_CTL_DEL, p->fd, NULL);
    }
  }
  mark("end");
  if (!published) fail("the publish was not answered within %.0f ms", timeout);

  qsort(latencies, (size_t)answered, sizeof *latencies, by_value);
  printf("{\"result\": {");
  if (answered)
    printf("\"p50_ms\": %.3f, \"p99_ms\": %.3f, \"max_ms\": %.3f, ", percentile(latencies, answered, 50),
           percentile(latencies, answered, 99), latencies[answered - 1]);
  else
    printf("\"p50_ms\": null, \"p99_ms\": null, \"max_ms\": null, ");
  printf("\"samples\": %d, \"answered\": %d, \"early\": %d, \"failed\": %d, \"waiting\": %d}}\n", answered,
         answered, early, failed, n - answered - failed - early);
  return 0;
}
