/*
 * The ceiling of WebSocket fan-out on this machine: the least a server can do,
 * so that the load generator's own capacity is checked against it. If
 * fanout.c measured a real server at nearly this server's figure, the figure
 * would be the generator's, not the server's.
 *
 *   ceiling PORT
 *
 * One thread, epoll, 127.0.0.1:PORT. Every connection is upgraded with no
 * check (fanout.c does not check the accept key either); one whose path
 * starts with /pub/ publishes: each of its frames is unmasked and written as
 * it is to every other connection, which subscribed by connecting. Nothing is
 * stored, parsed or acknowledged: no real server does less per delivery. It
 * speaks fanout.c's raw dialect (as nchan does).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CONNS 65536
#define READ_SIZE (256 * 1024)

struct conn {
  int fd, upgraded, publisher;
  char *in; /* bytes of a frame (or the request head) not all read yet */
  size_t in_len, in_cap;
  char *out; /* bytes not yet taken by the kernel */
  size_t out_len, out_cap;
};

static struct conn *conns[MAX_CONNS];
static int subscribers[MAX_CONNS], n_subscribers;
static int ep;

static void die(const char *what) {
  perror(what);
  exit(1);
}

static void *grow(void *p, size_t *cap, size_t need) {
  if (need <= *cap) return p;
  size_t c = *cap ? *cap : 4096;
  while (c < need) c *= 2;
  if (!(p = realloc(p, c))) die("realloc");
  *cap = c;
  return p;
}

static void put(struct conn *c, const char *data, size_t len) {
  if (c->out_len == 0) {
    ssize_t w = send(c->fd, data, len, MSG_NOSIGNAL);
    if (w > 0) data += w, len -= (size_t)w;
    if (len == 0) return;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.fd = c->fd};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
  }
  c->out = grow(c->out, &c->out_cap, c->out_len + len);
  memcpy(c->out + c->out_len, data, len);
  c->out_len += len;
}

static void flush_out(struct conn *c) {
  ssize_t w = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL);
  if (w <= 0) return;
  memmove(c->out, c->out + w, c->out_len - (size_t)w);
  c->out_len -= (size_t)w;
  if (c->out_len == 0) {
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = c->fd};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
  }
}

static void drop(struct conn *c) {
  for (int k = 0; k < n_subscribers; k++)
    if (subscribers[k] == c->fd) subscribers[k] = subscribers[--n_subscribers];
  close(c->fd);
  conns[c->fd] = NULL;
  free(c->in);
  free(c->out);
  free(c);
}

/* The publisher's frames in c->in, unmasked, to every subscriber in one write
   each (as many frames as this read brought); returns the bytes used. */
static size_t fan_out(struct conn *c) {
  static char *frames;
  static size_t frames_cap;
  size_t at = 0, fl = 0;
  while (c->in_len - at >= 6) {
    unsigned char *h = (unsigned char *)c->in + at;
    size_t hl = 2, pl = h[1] & 0x7f;
    if (pl == 126) {
      if (c->in_len - at < 8) break;
      pl = (size_t)h[2] << 8 | h[3];
      hl = 4;
    } else if (pl == 127) {
      return c->in_len; /* no frame of the load generator is that long */
    }
    if (c->in_len - at < hl + 4 + pl) break;
    const unsigned char *key = h + hl, *p = h + hl + 4;
    at += hl + 4 + pl;
    if ((h[0] & 0x0f) != 0x1 && (h[0] & 0x0f) != 0x2) continue;
    frames = grow(frames, &frames_cap, fl + pl + 4);
    frames[fl++] = (char)h[0];
    if (pl < 126) frames[fl++] = (char)pl;
    else frames[fl++] = 126, frames[fl++] = (char)(pl >> 8), frames[fl++] = (char)pl;
    for (size_t i = 0; i < pl; i++) frames[fl + i] = (char)(p[i] ^ key[i & 3]);
    fl += pl;
  }
  if (fl)
    for (int k = 0; k < n_subscribers; k++) put(conns[subscribers[k]], frames, fl);
  return at;
}

static void readable(struct conn *c) {
  static char buf[READ_SIZE];
  ssize_t r = recv(c->fd, buf, sizeof buf, 0);
  if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (r <= 0) {
    drop(c);
    return;
  }
  c->in = grow(c->in, &c->in_cap, c->in_len + (size_t)r + 1);
  memcpy(c->in + c->in_len, buf, (size_t)r);
  c->in_len += (size_t)r;
  if (!c->upgraded) {
    c->in[c->in_len] = 0;
    char *end = strstr(c->in, "\r\n\r\n");
    if (!end) return;
    c->publisher = strncmp(c->in, "GET /pub/", 9) == 0;
    static const char ok[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                             "Sec-WebSocket-Accept: unchecked\r\n\r\n";
    put(c, ok, sizeof ok - 1);
    c->upgraded = 1;
    if (!c->publisher) subscribers[n_subscribers++] = c->fd;
    size_t head = (size_t)(end - c->in) + 4;
    memmove(c->in, c->in + head, c->in_len - head);
    c->in_len -= head;
  }
  /* What subscribers send (nothing, from fanout.c) is dropped. */
  size_t used = c->publisher ? fan_out(c) : c->in_len;
  memmove(c->in, c->in + used, c->in_len - used);
  c->in_len -= used;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: ceiling PORT\n");
    return 2;
  }
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(lfd, 4096) < 0) die("listen");
  if ((ep = epoll_create1(0)) < 0) die("epoll_create1");
  struct epoll_event lev = {.events = EPOLLIN, .data.fd = lfd};
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
  static struct epoll_event events[1024];
  for (;;) {
    int k = epoll_wait(ep, events, 1024, -1);
    for (int j = 0; j < k; j++) {
      int fd = events[j].data.fd;
      if (fd == lfd) {
        int cfd;
        while ((cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
          if (cfd >= MAX_CONNS) {
            close(cfd);
            continue;
          }
          setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          struct conn *c = calloc(1, sizeof *c);
          if (!c) die("calloc");
          c->fd = cfd;
          conns[cfd] = c;
          struct epoll_event ev = {.events = EPOLLIN, .data.fd = cfd};
          epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &ev);
        }
        continue;
      }
      struct conn *c = conns[fd];
      if (!c) continue;
      if (events[j].events & EPOLLOUT) flush_out(c);
      if (events[j].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) readable(c);
    }
  }
}
