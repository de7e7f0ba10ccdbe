/* wspipe: a gwsocket-compatible WebSocket pipe server, written over the public C API.
 *
 *   build/wspipe [-p PORT] [--addr=ADDR] [--pipein=FIFO] [--pipeout=FIFO]
 *                         [--std | --stdin | --stdout] [--strict] [--echo-mode]
 *                         [--max-frame-size=BYTES] [--origin=ORIGIN]
 *                         [--access-log=FILE] [--ssl-cert=CERT --ssl-key=KEY]
 *
 * What an application writes into the input FIFO (and, with --stdin, into standard
 * input) goes to the WebSocket clients; what the clients send goes to the output FIFO
 * (and, with --stdout, to standard output). Standard mode broadcasts each read of up to
 * PIPE_BUF bytes as one text message and writes client payloads as they are. Strict
 * mode (--strict) frames every message in both directions with a 12-byte header of
 * three big-endian uint32 (client id, type, length), as gwsocket does. docs/wspipe.md
 * is the manual: the command line, both data modes, the buffering and drop policy of
 * the output, and the differences from gwsocket.
 *
 * One thread, one poll(2) over: a self-pipe for SIGINT/SIGTERM, the manager's fd
 * (wss_mgr_fd), the input FIFO (and stdin), and the output FIFO (and stdout) while they
 * have queued bytes. Nothing runs while nothing happens: no timers, no busy loop. */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE /* getopt_long */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "wsserver.h"

#define WSPIPE_VERSION WSS_VERSION
#define DEFAULT_PORT 7890
#define DEFAULT_ADDR "0.0.0.0"
#define DEFAULT_PIPEIN "/tmp/wspipein.fifo"
#define DEFAULT_PIPEOUT "/tmp/wspipeout.fifo"
#define DEFAULT_MAX_FRAME (1u << 20) /* gwsocket's WS_MAX_FRM_SZ: 1 MiB */
#define MAX_FRAME_LIMIT 0x7fffffffu  /* gwsocket keeps it in an int */

/* Strict mode: three big-endian uint32 (client id, type, payload length). */
#define HDR_SIZE 12
#define TYPE_TEXT 0x01
#define TYPE_BINARY 0x02
#define TYPE_CLOSE 0x08
#define TYPE_OPEN 0x10
/* gwsocket's open notification carries the client's IP address (no port) as text in a
 * buffer of INET6_ADDRSTRLEN (46) bytes, NUL-padded: always 46 bytes of payload. */
#define ADDR_PAD INET6_ADDRSTRLEN

#define STRICT_READ_CHUNK (64u << 10)
#define READS_PER_WAKE 16          /* reads of one input before the manager runs again */
#define OUT_QUEUE_MIN (8u << 20)   /* bytes an output may queue for a slow reader */
#define SHUTDOWN_MS 3000           /* how long SIGTERM waits for the clients' close frames */
#define QUICK_EOF_MS 100
#define QUICK_EOFS_BEFORE_FALLBACK 3

/* ------------------------------------------------------------------------- */
/* Logging and small helpers */

static void logmsg(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("wspipe: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint32_t get_be32(const uint8_t *p) {
  return ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16) | ((uint32_t) p[2] << 8) | p[3];
}

static void put_be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t) (v >> 24);
  p[1] = (uint8_t) (v >> 16);
  p[2] = (uint8_t) (v >> 8);
  p[3] = (uint8_t) v;
}

static void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q) {
    logmsg("out of memory (%zu bytes)", n);
    exit(1);
  }
  return q;
}

/* ------------------------------------------------------------------------- */
/* UTF-8. Text messages must be valid UTF-8 on the wire; gwsocket replaces each byte of
 * an invalid sequence with '?' before sending text, and so does wspipe (the length
 * stays the same). A sequence cut by the end of a PIPE_BUF read is kept for the next
 * read instead (standard mode), so multi-byte characters survive the chunking. */

enum { U_OK, U_BAD, U_SHORT };

/* Checks the sequence at p[0..n), n >= 1. U_OK: valid, *len its length; U_BAD: invalid,
 * *len the bytes of its maximal invalid part (>= 1); U_SHORT: a valid start cut by the
 * end of the buffer, *len = n. */
static int utf8_check(const uint8_t *p, size_t n, size_t *len) {
  uint8_t b = p[0], lo = 0x80, hi = 0xBF;
  size_t need;
  if (b < 0x80) {
    *len = 1;
    return U_OK;
  }
  if (b >= 0xC2 && b <= 0xDF) {
    need = 2;
  } else if (b >= 0xE0 && b <= 0xEF) {
    need = 3;
    if (b == 0xE0) lo = 0xA0;
    if (b == 0xED) hi = 0x9F; /* no UTF-16 surrogates */
  } else if (b >= 0xF0 && b <= 0xF4) {
    need = 4;
    if (b == 0xF0) lo = 0x90;
    if (b == 0xF4) hi = 0x8F; /* nothing above U+10FFFF */
  } else {
    *len = 1;
    return U_BAD;
  }
  for (size_t i = 1; i < need; i++) {
    if (i >= n) {
      *len = n;
      return U_SHORT;
    }
    uint8_t l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
    if (p[i] < l || p[i] > h) {
      *len = i;
      return U_BAD;
    }
  }
  *len = need;
  return U_OK;
}

/* Replaces invalid sequences in place with '?'. With keep_tail, a sequence cut by the
 * end is left alone and its length returned (the caller keeps it for later). */
static size_t utf8_sanitize(uint8_t *p, size_t n, bool keep_tail) {
  size_t i = 0;
  while (i < n) {
    size_t len;
    int r = utf8_check(p + i, n - i, &len);
    if (r == U_OK) {
      i += len;
      continue;
    }
    if (r == U_SHORT && keep_tail) return n - i;
    memset(p + i, '?', len);
    i += len;
  }
  return 0;
}

/* ------------------------------------------------------------------------- */
/* Clients: a strict-mode id (uint32, as in gwsocket's header) for each open WebSocket,
 * found by that id (messages from the pipe) or by connection id (events). Two small
 * open-addressing tables with linear probing and backward-shift deletion. */

struct client {
  wss_id conn;
  uint32_t id;
  char ip[ADDR_PAD]; /* NUL-padded, as gwsocket's remote_ip */
};

struct table {
  struct client **slot;
  size_t mask; /* capacity - 1 (a power of two), or 0 before the first insert */
  size_t count;
  bool by_id;
};

static uint64_t table_key(const struct table *t, const struct client *c) {
  return t->by_id ? c->id : c->conn;
}

static size_t table_hash(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  return (size_t) k;
}

static struct client *table_find(const struct table *t, uint64_t key) {
  if (!t->slot) return NULL;
  for (size_t i = table_hash(key) & t->mask; t->slot[i]; i = (i + 1) & t->mask) {
    if (table_key(t, t->slot[i]) == key) return t->slot[i];
  }
  return NULL;
}

static void table_put(struct table *t, struct client *c);

static void table_grow(struct table *t) {
  size_t old_cap = t->slot ? t->mask + 1 : 0, cap = old_cap ? old_cap * 2 : 64;
  struct client **old = t->slot;
  t->slot = calloc(cap, sizeof *t->slot);
  if (!t->slot) {
    logmsg("out of memory");
    exit(1);
  }
  t->mask = cap - 1;
  t->count = 0;
  for (size_t i = 0; i < old_cap; i++) {
    if (old[i]) table_put(t, old[i]);
  }
  free(old);
}

static void table_put(struct table *t, struct client *c) {
  if (!t->slot || (t->count + 1) * 2 > t->mask + 1) table_grow(t);
  size_t i = table_hash(table_key(t, c)) & t->mask;
  while (t->slot[i]) i = (i + 1) & t->mask;
  t->slot[i] = c;
  t->count++;
}

static void table_remove(struct table *t, uint64_t key) {
  if (!t->slot) return;
  size_t i = table_hash(key) & t->mask;
  while (t->slot[i] && table_key(t, t->slot[i]) != key) i = (i + 1) & t->mask;
  if (!t->slot[i]) return;
  t->slot[i] = NULL;
  t->count--;
  /* Backward shift: move later entries of the run into the hole when their home slot
   * does not lie cyclically in (hole, j]. */
  for (size_t j = (i + 1) & t->mask; t->slot[j]; j = (j + 1) & t->mask) {
    size_t home = table_hash(table_key(t, t->slot[j])) & t->mask;
    bool stays = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
    if (!stays) {
      t->slot[i] = t->slot[j];
      t->slot[j] = NULL;
      i = j;
    }
  }
}

/* ------------------------------------------------------------------------- */
/* Outputs: the output FIFO, and stdout with --stdout.
 *
 * Buffering and drop policy (the clients must never wait for the application):
 *  - the FIFO is opened with O_WRONLY|O_NONBLOCK when there is something to write; with
 *    no reader that open fails (ENXIO) and the message is dropped, as gwsocket does: a
 *    reader gets what clients send after it attached;
 *  - writes are non-blocking; what a slow reader does not take yet waits in a queue
 *    of at most max(8 MiB, 2 x (max frame size + 12)) bytes, written as the FIFO drains
 *    (poll POLLOUT). A message that does not fit is dropped whole (drop newest): the
 *    bytes already queued keep their order and strict-mode framing stays intact;
 *  - when the reader goes away (EPIPE), the queue is discarded and the FIFO is reopened
 *    at the next message, so a new reader always starts at a message boundary;
 *  - stdout is written the same way when it is a pipe or a socket (made non-blocking,
 *    its flags restored at exit); a file or terminal is written with blocking writes.
 *    After EPIPE on stdout nothing more goes there.
 * Each episode of drops is logged once when it starts and once when it ends. */

struct output {
  const char *label;
  const char *path; /* NULL: stdout */
  int fd;
  bool dead;        /* stdout whose reader is gone */
  int saved_flags;  /* stdout's flags before we made it non-blocking, or -1 */
  uint8_t *q;
  size_t qstart, qlen, qcap, qlimit;
  bool dropping;
  uint64_t dropped;
  bool open_error_logged;
};

static void out_drop(struct output *o, const char *why) {
  if (!o->dropping) {
    logmsg("%s: %s: dropping messages until it can be written again", o->label, why);
    o->dropping = true;
    o->dropped = 0;
  }
  o->dropped++;
}

static void out_written(struct output *o) {
  if (o->dropping) {
    logmsg("%s: writing again (%llu message(s) dropped)", o->label, (unsigned long long) o->dropped);
    o->dropping = false;
  }
}

static bool out_open(struct output *o) {
  if (o->fd >= 0) return true;
  if (o->dead || !o->path) return false;
  o->fd = open(o->path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
  if (o->fd < 0) {
    if (errno != ENXIO && !o->open_error_logged) {
      logmsg("%s: cannot open %s: %s", o->label, o->path, strerror(errno));
      o->open_error_logged = true;
    }
    return false;
  }
  o->open_error_logged = false;
  return true;
}

/* The reader went away or the fd failed: discard what waits; the FIFO is reopened at
 * the next message. */
static void out_broken(struct output *o, int err) {
  if (o->qlen > 0) {
    logmsg("%s: %s; %zu queued byte(s) discarded", o->label,
           err == EPIPE ? "reader went away" : strerror(err), o->qlen);
  }
  o->qstart = o->qlen = 0;
  if (o->path) {
    close(o->fd);
    o->fd = -1;
  } else {
    if (!o->dead) logmsg("%s: %s; nothing more is written there", o->label, strerror(err));
    o->dead = true;
  }
}

static void out_queue(struct output *o, const uint8_t *p, size_t n) {
  if (n == 0) return;
  if (o->qstart > 0 && o->qstart + o->qlen + n > o->qcap) {
    memmove(o->q, o->q + o->qstart, o->qlen);
    o->qstart = 0;
  }
  if (o->qstart + o->qlen + n > o->qcap) {
    size_t cap = o->qcap ? o->qcap : 65536;
    while (cap < o->qlen + n) cap *= 2;
    o->q = xrealloc(o->q, cap);
    o->qcap = cap;
  }
  memcpy(o->q + o->qstart + o->qlen, p, n);
  o->qlen += n;
}

/* Writes one message (hdr then payload) or queues it, or drops it whole. */
static void out_message(struct output *o, const uint8_t *hdr, size_t hlen, const uint8_t *p,
                        size_t n) {
  size_t total = hlen + n;
  struct iovec iov[2];
  int cnt = 0;
  if (hlen) iov[cnt++] = (struct iovec){.iov_base = (void *) hdr, .iov_len = hlen};
  if (n) iov[cnt++] = (struct iovec){.iov_base = (void *) p, .iov_len = n};
  if (cnt == 0 || o->dead) return;
  ssize_t w = -1;
  for (int attempt = 0; attempt < 2 && w < 0; attempt++) {
    if (!out_open(o)) {
      out_drop(o, o->path ? "no reader" : "closed");
      return;
    }
    if (o->qlen > 0) {
      if (o->qlen + total > o->qlimit) {
        out_drop(o, "reader too slow, queue full");
        return;
      }
      out_queue(o, hdr, hlen);
      out_queue(o, p, n);
      return;
    }
    do {
      w = writev(o->fd, iov, cnt);
    } while (w < 0 && errno == EINTR);
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      w = 0;
    } else if (w < 0) {
      out_broken(o, errno); /* the reader left: a new one may be there already */
    }
  }
  if (w < 0) {
    out_drop(o, "write failed");
    return;
  }
  out_written(o);
  size_t done = (size_t) w;
  if (done < hlen) {
    out_queue(o, hdr + done, hlen - done);
    out_queue(o, p, n);
  } else if (done < total) {
    out_queue(o, p + (done - hlen), total - done);
  }
}

/* POLLOUT (or an error) on an output with queued bytes. */
static void out_flush(struct output *o) {
  while (o->qlen > 0 && o->fd >= 0) {
    ssize_t w = write(o->fd, o->q + o->qstart, o->qlen);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) out_broken(o, errno);
      return;
    }
    o->qstart += (size_t) w;
    o->qlen -= (size_t) w;
  }
  if (o->qlen == 0) {
    o->qstart = 0;
    if (o->qcap > (1u << 20)) { /* give back what a burst took */
      free(o->q);
      o->q = NULL;
      o->qcap = 0;
    }
  }
}

/* ------------------------------------------------------------------------- */
/* Inputs: the input FIFO, and stdin with --stdin. */

struct input {
  const char *label;
  const char *path; /* NULL: stdin */
  int fd;           /* -1: closed for good (stdin at its end) */
  int keep_fd;      /* a writer of our own on the FIFO (fallback, see input_open), or -1 */
  bool got_data;    /* bytes arrived since the last (re)open */
  int64_t opened_ms;
  int quick_eofs;
  uint8_t *buf; /* pending bytes: buf[start .. start + len) */
  size_t start, len, cap;
  bool resync; /* strict mode: looking for a plausible header after a bad one */
  uint64_t skipped;
};

struct config {
  long port;
  const char *addr, *pipein, *pipeout, *origin, *access_log, *ssl_cert, *ssl_key;
  bool use_stdin, use_stdout, strict, echo;
  uint32_t max_frame;
};

struct app {
  struct config cfg;
  wss_mgr *mgr;
  wss_id listener;
  struct table by_conn, by_id;
  uint32_t next_id;
  struct input in[2];
  size_t n_in;
  struct output out[2];
  size_t n_out;
  FILE *access_log;
  bool stopping;
  int64_t deadline;
};

static int sig_pipe[2] = {-1, -1};

static void on_signal(int sig) {
  int saved = errno;
  unsigned char b = (unsigned char) sig;
  if (write(sig_pipe[1], &b, 1) < 0) { /* full: a wakeup is pending anyway */
  }
  errno = saved;
}

/* Creates the FIFO when missing (mode 0666 less the umask, as gwsocket). */
static bool ensure_fifo(const char *path) {
  struct stat st;
  if (stat(path, &st) == 0) {
    if (S_ISFIFO(st.st_mode)) return true;
    logmsg("%s exists and is not a FIFO", path);
    return false;
  }
  if (errno != ENOENT || (mkfifo(path, 0666) != 0 && errno != EEXIST)) {
    logmsg("cannot create the FIFO %s: %s", path, strerror(errno));
    return false;
  }
  return true;
}

/* Opens the input FIFO for reading.
 *
 * Why not keep a dummy writer open (gwsocket opens the FIFO O_RDWR)? Then the end of
 * a writer is never seen, and in strict mode the half message a dying writer left
 * would be glued to the next writer's first header. So the FIFO is opened
 * O_RDONLY|O_NONBLOCK and reopened at each end of file. This does not spin: on Linux a
 * FIFO opened while no writer is attached does not poll readable (no POLLHUP) until a
 * writer comes and writes or goes; poll(2) just sleeps. Where a system would report
 * the hang-up at once (end of file again and again with no data, right after the
 * reopen), wspipe falls back to holding a writer of its own on the FIFO, as gwsocket
 * does, and logs it. */
static bool input_open(struct input *in) {
  if (!ensure_fifo(in->path)) return false;
  in->fd = open(in->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (in->fd < 0) {
    logmsg("cannot open %s: %s", in->path, strerror(errno));
    return false;
  }
  in->got_data = false;
  in->opened_ms = now_ms();
  return true;
}

static void broadcast(struct app *a, const uint8_t *p, size_t n, uint32_t op) {
  size_t sent = 0;
  wss_result r = wss_ws_broadcast(a->mgr, a->listener, p, n, op, &sent);
  if (r != WSS_RESULT_OK) logmsg("broadcast: %s: %s", wss_result_str(r), wss_mgr_last_error(a->mgr));
}

/* Standard mode: each read (up to PIPE_BUF bytes) is one text message. */
static void std_process(struct app *a, struct input *in, bool at_end) {
  size_t keep = utf8_sanitize(in->buf, in->len, !at_end);
  size_t n = in->len - keep;
  if (n > 0) broadcast(a, in->buf, n, WSS_OP_TEXT);
  memmove(in->buf, in->buf + n, keep);
  in->len = keep;
}

static void strict_dispatch(struct app *a, uint32_t id, uint32_t type, uint8_t *p, uint32_t n) {
  uint32_t op = type == TYPE_TEXT ? WSS_OP_TEXT : WSS_OP_BINARY;
  if (op == WSS_OP_TEXT) utf8_sanitize(p, n, false);
  if (id == 0) {
    broadcast(a, p, n, op);
    return;
  }
  struct client *c = table_find(&a->by_id, id);
  if (!c) return; /* gone already: dropped silently, as gwsocket */
  wss_result r = wss_ws_send(a->mgr, c->conn, p, n, op);
  if (r != WSS_RESULT_OK && r != WSS_RESULT_CLOSED) {
    logmsg("send to client %u: %s", (unsigned) id, wss_result_str(r));
  }
}

static void strict_ensure_cap(struct input *in, size_t need) {
  if (in->start > 0) {
    memmove(in->buf, in->buf + in->start, in->len);
    in->start = 0;
  }
  if (need > in->cap) {
    size_t cap = in->cap ? in->cap : STRICT_READ_CHUNK;
    while (cap < need) cap *= 2;
    in->buf = xrealloc(in->buf, cap);
    in->cap = cap;
  }
}

/* Strict mode: takes every whole message out of the pending bytes.
 *
 * A header with a type other than 0x1/0x2, or a length over --max-frame-size, is
 * dropped with a logged error (its 12 bytes, as gwsocket), and then the input is
 * resynchronised: bytes are skipped one at a time until one starts a plausible header
 * (type 0x1 or 0x2, length within the limit, client id 0 or one that was handed out).
 * So a bad header followed by a good message loses nothing of the good one, even when
 * the bad header had a payload of its own behind it. The end of a writer also resets
 * the state (see input_eof). */
static void strict_process(struct app *a, struct input *in) {
  uint32_t max = a->cfg.max_frame;
  while (in->len >= HDR_SIZE) {
    const uint8_t *h = in->buf + in->start;
    uint32_t id = get_be32(h), type = get_be32(h + 4), size = get_be32(h + 8);
    bool type_ok = type == TYPE_TEXT || type == TYPE_BINARY;
    if (in->resync) {
      if (!(type_ok && size <= max && (id == 0 || id < a->next_id))) {
        in->start++;
        in->len--;
        in->skipped++;
        continue;
      }
      logmsg("%s: resynchronised after skipping %llu byte(s)", in->label,
             (unsigned long long) in->skipped);
      in->resync = false;
    } else if (!type_ok || size > max) {
      if (!type_ok) {
        logmsg("%s: strict mode: bad message type 0x%x (client %u, length %u): header dropped",
               in->label, (unsigned) type, (unsigned) id, (unsigned) size);
      } else {
        logmsg("%s: strict mode: length %u over the frame limit %u (client %u): header dropped",
               in->label, (unsigned) size, (unsigned) max, (unsigned) id);
      }
      in->start += HDR_SIZE;
      in->len -= HDR_SIZE;
      in->resync = true;
      in->skipped = 0;
      continue;
    }
    if (in->len - HDR_SIZE < size) { /* partial: wait for the rest */
      strict_ensure_cap(in, HDR_SIZE + (size_t) size);
      break;
    }
    strict_dispatch(a, id, type, in->buf + in->start + HDR_SIZE, size);
    in->start += HDR_SIZE + (size_t) size;
    in->len -= HDR_SIZE + (size_t) size;
  }
  if (in->len == 0) {
    in->start = 0;
    if (in->cap > (1u << 20)) { /* give back what a large message took */
      free(in->buf);
      in->buf = NULL;
      in->cap = 0;
    }
  }
}

static void input_eof(struct app *a, struct input *in) {
  if (!a->cfg.strict) {
    std_process(a, in, true);
  } else if (in->len > 0 || in->resync) {
    if (in->len > 0) {
      logmsg("%s: the writer closed in the middle of a message: %zu byte(s) dropped", in->label,
             in->len);
    }
    in->start = in->len = 0;
  }
  in->resync = false;
  if (!in->path) { /* stdin cannot be reopened: the FIFO goes on */
    in->fd = -1;
    return;
  }
  bool quick = !in->got_data && now_ms() - in->opened_ms < QUICK_EOF_MS;
  in->quick_eofs = quick ? in->quick_eofs + 1 : 0;
  close(in->fd);
  in->fd = -1;
  if (!input_open(in)) {
    logmsg("%s: giving up on %s", in->label, in->path);
    return;
  }
  if (in->quick_eofs >= QUICK_EOFS_BEFORE_FALLBACK && in->keep_fd < 0) {
    in->keep_fd = open(in->path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    logmsg("%s: end of file reported without a writer; holding the FIFO open from here on",
           in->label);
  }
}

static void input_readable(struct app *a, struct input *in) {
  for (int round = 0; round < READS_PER_WAKE && in->fd >= 0; round++) {
    size_t room;
    if (a->cfg.strict) {
      if (in->start > 0 || in->cap - in->len < STRICT_READ_CHUNK / 4) {
        strict_ensure_cap(in, in->len + STRICT_READ_CHUNK);
      }
      room = in->cap - in->start - in->len;
    } else {
      room = PIPE_BUF; /* buf holds PIPE_BUF + 4: a cut character and one read */
    }
    ssize_t n = read(in->fd, in->buf + in->start + in->len, room);
    if (n > 0) {
      in->got_data = true;
      in->quick_eofs = 0;
      in->len += (size_t) n;
      if (a->cfg.strict) {
        strict_process(a, in);
      } else {
        std_process(a, in, false);
      }
      if (!in->path) return; /* stdin may block: one read per wakeup */
      continue;
    }
    if (n == 0) {
      input_eof(a, in);
      return;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      logmsg("%s: read: %s", in->label, strerror(errno));
      input_eof(a, in);
    }
    return;
  }
}

/* ------------------------------------------------------------------------- */
/* WebSocket side */

static void out_all(struct app *a, const uint8_t *hdr, size_t hlen, const uint8_t *p, size_t n) {
  for (size_t i = 0; i < a->n_out; i++) out_message(&a->out[i], hdr, hlen, p, n);
}

static void notify(struct app *a, uint32_t id, uint32_t type, const uint8_t *p, size_t n) {
  uint8_t hdr[HDR_SIZE];
  put_be32(hdr, id);
  put_be32(hdr + 4, type);
  put_be32(hdr + 8, (uint32_t) n);
  out_all(a, hdr, sizeof hdr, p, n);
}

/* "ip:port" or "[v6]:port" -> "ip" / "v6". */
static void peer_ip(struct app *a, wss_id conn, char *ip, size_t cap) {
  char peer[128];
  size_t len = 0;
  memset(ip, 0, cap);
  if (wss_conn_peer(a->mgr, conn, peer, sizeof peer, &len) != WSS_RESULT_OK) return;
  const char *s = peer, *e = strrchr(peer, ':');
  if (peer[0] == '[') {
    s = peer + 1;
    e = strchr(s, ']');
  }
  if (!e) e = peer + len;
  size_t n = (size_t) (e - s);
  if (n >= cap) n = cap - 1;
  memcpy(ip, s, n);
}

static void log_escaped(FILE *f, wss_str s) {
  for (size_t i = 0; i < s.len; i++) {
    unsigned char c = s.ptr[i];
    if (c == '"' || c == '\\') {
      fputc('\\', f);
      fputc(c, f);
    } else if (c < 0x20 || c >= 0x7f) {
      fprintf(f, "\\x%02x", c);
    } else {
      fputc(c, f);
    }
  }
}

static wss_str header_or_dash(struct app *a, wss_id conn, const char *name) {
  wss_str v;
  if (wss_http_header(a->mgr, conn, name, &v) != WSS_RESULT_OK || v.len == 0) {
    v.ptr = (const uint8_t *) "-";
    v.len = 1;
  }
  return v;
}

/* --origin as gwsocket: the client must send exactly one Origin header, equal to the
 * option (ASCII case-insensitive). Browsers always send one. */
static bool origin_ok(struct app *a, wss_id conn, const wss_http_request *req) {
  size_t count = 0;
  wss_str origin = {(const uint8_t *) "", 0};
  for (size_t i = 0; i < req->header_count; i++) {
    wss_str name, value;
    if (wss_http_header_at(a->mgr, conn, i, &name, &value) != WSS_RESULT_OK) continue;
    if (name.len == 6 && strncasecmp((const char *) name.ptr, "origin", 6) == 0) {
      origin = value;
      count++;
    }
  }
  size_t want = strlen(a->cfg.origin);
  return count == 1 && origin.len == want &&
         strncasecmp((const char *) origin.ptr, a->cfg.origin, want) == 0;
}

/* An HTTP request on the listener: the WebSocket handshake, upgraded by hand so that the
 * access log sees the request line and its headers. */
static void on_request(struct app *a, wss_id conn) {
  wss_http_request req;
  if (wss_http_request_get(a->mgr, conn, &req) != WSS_RESULT_OK) return;
  char ip[ADDR_PAD];
  peer_ip(a, conn, ip, sizeof ip);
  wss_str referer = header_or_dash(a, conn, "Referer");
  wss_str agent = header_or_dash(a, conn, "User-Agent");
  wss_str version;
  bool bad_version = wss_http_header(a->mgr, conn, "Sec-WebSocket-Version", &version) ==
                         WSS_RESULT_OK &&
                     !(version.len == 2 && memcmp(version.ptr, "13", 2) == 0);

  int status = 101;
  size_t bytes = 0;
  if (a->cfg.origin && !origin_ok(a, conn, &req)) {
    static const char body[] = "origin not allowed\n";
    status = 403;
    bytes = sizeof body - 1;
    wss_http_reply(a->mgr, conn, 403, "Content-Type: text/plain\r\nConnection: close\r\n",
                   (const uint8_t *) body, bytes);
  } else {
    wss_result r = wss_ws_upgrade(a->mgr, conn, NULL);
    if (r == WSS_RESULT_PROTOCOL) {
      status = bad_version ? 426 : 400; /* answered by the library */
    } else if (r != WSS_RESULT_OK) {
      logmsg("upgrade: %s: %s", wss_result_str(r), wss_mgr_last_error(a->mgr));
      status = 500;
      wss_conn_close(a->mgr, conn, false);
    }
  }
  if (!a->access_log) return;

  /* Combined Log Format (Common Log Format + referer and user agent). */
  char when[64];
  time_t t = time(NULL);
  struct tm tm;
  localtime_r(&t, &tm);
  strftime(when, sizeof when, "[%d/%b/%Y:%H:%M:%S %z]", &tm);
  FILE *f = a->access_log;
  fprintf(f, "%s - - %s \"", ip[0] ? ip : "-", when);
  log_escaped(f, req.method);
  fputc(' ', f);
  log_escaped(f, req.target);
  fputc(' ', f);
  log_escaped(f, req.version);
  fprintf(f, "\" %d ", status);
  if (bytes) {
    fprintf(f, "%zu", bytes);
  } else {
    fputc('-', f);
  }
  fputs(" \"", f);
  log_escaped(f, referer);
  fputs("\" \"", f);
  log_escaped(f, agent);
  fputs("\"\n", f);
  fflush(f);
}

static uint32_t new_client_id(struct app *a) {
  for (;;) {
    uint32_t id = a->next_id++;
    if (a->next_id == 0) a->next_id = 1; /* wrapped after 4 billion clients */
    if (id != 0 && !table_find(&a->by_id, id)) return id;
  }
}

static void on_open(struct app *a, wss_id conn) {
  struct client *c = calloc(1, sizeof *c);
  if (!c) {
    wss_conn_close(a->mgr, conn, false);
    return;
  }
  c->conn = conn;
  c->id = new_client_id(a);
  peer_ip(a, conn, c->ip, sizeof c->ip);
  table_put(&a->by_conn, c);
  table_put(&a->by_id, c);
  if (a->stopping) {
    wss_ws_close(a->mgr, conn, 1001, "server shutting down");
    return;
  }
  if (a->cfg.strict && !a->cfg.echo) {
    notify(a, c->id, TYPE_OPEN, (const uint8_t *) c->ip, sizeof c->ip);
  }
}

static void on_message(struct app *a, const wss_event *ev) {
  struct client *c = table_find(&a->by_conn, ev->conn);
  if (!c) return;
  uint32_t op = (ev->flags & WSS_FLAG_TEXT) ? WSS_OP_TEXT : WSS_OP_BINARY;
  if (a->cfg.echo) {
    wss_ws_send(a->mgr, ev->conn, ev->data.ptr, ev->data.len, op);
  } else if (a->cfg.strict) {
    notify(a, c->id, op, ev->data.ptr, ev->data.len);
  } else {
    out_all(a, NULL, 0, ev->data.ptr, ev->data.len);
  }
}

static void on_close(struct app *a, wss_id conn) {
  struct client *c = table_find(&a->by_conn, conn);
  if (!c) return;
  if (a->cfg.strict && !a->cfg.echo) notify(a, c->id, TYPE_CLOSE, NULL, 0);
  table_remove(&a->by_conn, c->conn);
  table_remove(&a->by_id, c->id);
  free(c);
}

static void handle_event(struct app *a, const wss_event *ev) {
  switch (ev->kind) {
  case WSS_EV_HTTP_MSG:
    if (a->stopping) {
      wss_conn_close(a->mgr, ev->conn, false);
    } else {
      on_request(a, ev->conn);
    }
    break;
  case WSS_EV_WS_OPEN:
    on_open(a, ev->conn);
    break;
  case WSS_EV_WS_MSG:
    on_message(a, ev);
    break;
  case WSS_EV_CLOSE:
    on_close(a, ev->conn);
    break;
  case WSS_EV_ERROR:
    if (ev->conn == a->listener) {
      logmsg("listener: %.*s", (int) ev->data.len, (const char *) ev->data.ptr);
    }
    break;
  default:
    break;
  }
}

static void run_manager(struct app *a) {
  wss_event evs[64];
  wss_mgr_poll(a->mgr, 0, NULL);
  size_t n;
  /* The call that finds the queue empty also writes the sends gathered meanwhile. */
  while ((n = wss_mgr_next_events(a->mgr, evs, 64)) > 0) {
    for (size_t i = 0; i < n; i++) handle_event(a, &evs[i]);
  }
}

static void begin_shutdown(struct app *a) {
  a->stopping = true;
  a->deadline = now_ms() + SHUTDOWN_MS;
  wss_conn_close(a->mgr, a->listener, false);
  for (size_t i = 0; a->by_conn.slot && i <= a->by_conn.mask; i++) {
    struct client *c = a->by_conn.slot[i];
    if (c) wss_ws_close(a->mgr, c->conn, 1001, "server shutting down");
  }
  wss_mgr_flush(a->mgr);
}

/* ------------------------------------------------------------------------- */
/* Command line */

static void usage(FILE *f) {
  fprintf(f,
          "wspipe %s: a gwsocket-compatible WebSocket server fed through named pipes\n"
          "\n"
          "Usage: wspipe [PORT] [options...]\n"
          "\n"
          "  PORT                      As the first argument: listen on 127.0.0.1:PORT\n"
          "                            (as the other examples do; --addr still applies).\n"
          "  -p --port=<port>          Port to bind (default %d).\n"
          "  -h --help                 This help.\n"
          "  -V --version              Display version information and exit.\n"
          "  --access-log=<path/file>  Log each handshake in Combined Log Format.\n"
          "  --addr=<addr>             IP address to bind (default %s).\n"
          "  --echo-mode               Echo every message back to its sender.\n"
          "  --max-frame-size=<bytes>  Largest message, from clients (closed with 1009\n"
          "                            above it) and through the pipe (default %u).\n"
          "  --origin=<origin>         Refuse handshakes without this Origin (403).\n"
          "  --pipein=<path/file>      FIFO to read from (default %s).\n"
          "  --pipeout=<path/file>     FIFO to write to (default %s).\n"
          "  --std                     Enable --stdin and --stdout.\n"
          "  --stdin                   Send stdin to the clients too.\n"
          "  --stdout                  Send what the clients send to stdout too.\n"
          "  --strict                  Framed messages with client ids (12-byte header).\n"
          "  --ssl-cert=<cert.crt>     TLS certificate (PEM): serve wss://.\n"
          "  --ssl-key=<priv.key>      TLS private key (PEM).\n"
          "\n"
          "See docs/wspipe.md for the data modes and the buffering policy.\n",
          WSPIPE_VERSION, DEFAULT_PORT, DEFAULT_ADDR, DEFAULT_MAX_FRAME, DEFAULT_PIPEIN,
          DEFAULT_PIPEOUT);
}

static void bad_usage(const char *fmt, const char *arg) {
  if (fmt) {
    fputs("wspipe: ", stderr);
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
  }
  usage(stderr);
  exit(2);
}

static long parse_number(const char *s, long min, long max, const char *what) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (!*s || *end || errno || v < min || v > max) bad_usage(what, s);
  return v;
}

static const char *nonempty(const char *s, const char *what) {
  if (!s || !*s) bad_usage(what, "");
  return s;
}

enum {
  OPT_ADDR = 256,
  OPT_ECHO,
  OPT_MAX_FRAME,
  OPT_ORIGIN,
  OPT_PIPEIN,
  OPT_PIPEOUT,
  OPT_STD,
  OPT_STDIN,
  OPT_STDOUT,
  OPT_STRICT,
  OPT_ACCESS_LOG,
  OPT_SSL_CERT,
  OPT_SSL_KEY,
};

static void parse_args(int argc, char **argv, struct config *cfg) {
  static const struct option opts[] = {
      {"port", required_argument, NULL, 'p'},
      {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, 'V'},
      {"addr", required_argument, NULL, OPT_ADDR},
      {"echo-mode", no_argument, NULL, OPT_ECHO},
      {"max-frame-size", required_argument, NULL, OPT_MAX_FRAME},
      {"origin", required_argument, NULL, OPT_ORIGIN},
      {"pipein", required_argument, NULL, OPT_PIPEIN},
      {"pipeout", required_argument, NULL, OPT_PIPEOUT},
      {"std", no_argument, NULL, OPT_STD},
      {"stdin", no_argument, NULL, OPT_STDIN},
      {"stdout", no_argument, NULL, OPT_STDOUT},
      {"strict", no_argument, NULL, OPT_STRICT},
      {"access-log", required_argument, NULL, OPT_ACCESS_LOG},
      {"ssl-cert", required_argument, NULL, OPT_SSL_CERT},
      {"ssl-key", required_argument, NULL, OPT_SSL_KEY},
      {NULL, 0, NULL, 0},
  };
  if (argc > 1 && argv[1][0] >= '0' && argv[1][0] <= '9') {
    /* The examples' common form: the port first, loopback only. */
    cfg->port = parse_number(argv[1], 0, 65535, "bad port: '%s'");
    cfg->addr = "127.0.0.1";
    argv[1] = argv[0];
    argc--;
    argv++;
  }
  int o;
  while ((o = getopt_long(argc, argv, "p:hV", opts, NULL)) != -1) {
    switch (o) {
    case 'p':
      cfg->port = parse_number(optarg, 0, 65535, "bad port: '%s'");
      break;
    case 'h':
      usage(stdout);
      exit(0);
    case 'V':
      printf("wspipe %s (libwsserver %s)\n", WSPIPE_VERSION, wss_version());
      exit(0);
    case OPT_ADDR:
      cfg->addr = nonempty(optarg, "empty --addr%s");
      break;
    case OPT_ECHO:
      cfg->echo = true;
      break;
    case OPT_MAX_FRAME:
      cfg->max_frame =
          (uint32_t) parse_number(optarg, 1, MAX_FRAME_LIMIT, "bad --max-frame-size: '%s'");
      break;
    case OPT_ORIGIN:
      cfg->origin = nonempty(optarg, "empty --origin%s");
      break;
    case OPT_PIPEIN:
      cfg->pipein = nonempty(optarg, "empty --pipein%s");
      break;
    case OPT_PIPEOUT:
      cfg->pipeout = nonempty(optarg, "empty --pipeout%s");
      break;
    case OPT_STD:
      cfg->use_stdin = cfg->use_stdout = true;
      break;
    case OPT_STDIN:
      cfg->use_stdin = true;
      break;
    case OPT_STDOUT:
      cfg->use_stdout = true;
      break;
    case OPT_STRICT:
      cfg->strict = true;
      break;
    case OPT_ACCESS_LOG:
      cfg->access_log = nonempty(optarg, "empty --access-log%s");
      break;
    case OPT_SSL_CERT:
      cfg->ssl_cert = nonempty(optarg, "empty --ssl-cert%s");
      break;
    case OPT_SSL_KEY:
      cfg->ssl_key = nonempty(optarg, "empty --ssl-key%s");
      break;
    default: /* getopt_long said what was wrong */
      bad_usage(NULL, NULL);
    }
  }
  if (optind < argc) bad_usage("unexpected argument: '%s'", argv[optind]);
  if (!cfg->ssl_cert != !cfg->ssl_key) bad_usage("--ssl-cert and --ssl-key go together%s", "");
}

/* ------------------------------------------------------------------------- */

static void setup_signals(void) {
  if (pipe(sig_pipe) != 0) {
    logmsg("pipe: %s", strerror(errno));
    exit(1);
  }
  for (int i = 0; i < 2; i++) {
    fcntl(sig_pipe[i], F_SETFL, fcntl(sig_pipe[i], F_GETFL) | O_NONBLOCK);
    fcntl(sig_pipe[i], F_SETFD, FD_CLOEXEC);
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sa.sa_handler = SIG_IGN; /* a reader that goes away is EPIPE, not death */
  sigaction(SIGPIPE, &sa, NULL);
}

static void setup_io(struct app *a) {
  struct config *cfg = &a->cfg;
  /* Inputs: the FIFO always (as gwsocket, --stdin adds stdin beside it). */
  struct input *in = &a->in[a->n_in++];
  in->label = "input pipe";
  in->path = cfg->pipein;
  in->keep_fd = -1;
  if (!input_open(in)) exit(1);
  if (cfg->use_stdin) {
    in = &a->in[a->n_in++];
    in->label = "stdin";
    in->fd = STDIN_FILENO;
    in->keep_fd = -1;
  }
  for (size_t i = 0; i < a->n_in; i++) {
    if (!cfg->strict) {
      a->in[i].cap = PIPE_BUF + 4;
      a->in[i].buf = xrealloc(NULL, a->in[i].cap);
    }
  }

  /* Outputs: the FIFO always (opened when a message comes), stdout with --stdout. */
  size_t qlimit = 2 * ((size_t) cfg->max_frame + HDR_SIZE);
  if (qlimit < OUT_QUEUE_MIN) qlimit = OUT_QUEUE_MIN;
  if (!ensure_fifo(cfg->pipeout)) exit(1);
  struct output *o = &a->out[a->n_out++];
  o->label = "output pipe";
  o->path = cfg->pipeout;
  o->fd = -1;
  o->saved_flags = -1;
  o->qlimit = qlimit;
  if (cfg->use_stdout) {
    o = &a->out[a->n_out++];
    o->label = "stdout";
    o->fd = STDOUT_FILENO;
    o->saved_flags = -1;
    o->qlimit = qlimit;
    struct stat st;
    if (fstat(STDOUT_FILENO, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode))) {
      int fl = fcntl(STDOUT_FILENO, F_GETFL);
      if (fl >= 0 && !(fl & O_NONBLOCK) && fcntl(STDOUT_FILENO, F_SETFL, fl | O_NONBLOCK) == 0) {
        o->saved_flags = fl;
      }
    }
  }
}

static void start_listener(struct app *a) {
  const struct config *cfg = &a->cfg;
  bool tls = cfg->ssl_cert != NULL;
  bool v6 = strchr(cfg->addr, ':') != NULL && cfg->addr[0] != '[';
  char url[512];
  snprintf(url, sizeof url, "%s://%s%s%s:%ld", tls ? "https" : "http", v6 ? "[" : "", cfg->addr,
           v6 ? "]" : "", cfg->port);

  wss_listen_opts opts;
  memset(&opts, 0, sizeof opts);
  opts.struct_size = sizeof opts;
  opts.max_frame_bytes = cfg->max_frame;
  opts.max_message_bytes = cfg->max_frame;
  opts.tls_cert = cfg->ssl_cert;
  opts.tls_key = cfg->ssl_key;
  wss_result r = wss_mgr_listen(a->mgr, url, &opts, &a->listener);
  if (r != WSS_RESULT_OK) {
    logmsg("cannot listen on %s: %s: %s", url, wss_result_str(r), wss_mgr_last_error(a->mgr));
    exit(1);
  }
  uint16_t port = 0;
  wss_listener_port(a->mgr, a->listener, &port);
  logmsg("listening on %s://%s%s%s:%u (%s mode%s)", tls ? "wss" : "ws", v6 ? "[" : "", cfg->addr,
         v6 ? "]" : "", (unsigned) port, cfg->strict ? "strict" : "standard",
         cfg->echo ? ", echo" : "");
}

int main(int argc, char **argv) {
  static struct app app;
  struct app *a = &app;
  a->cfg.port = DEFAULT_PORT;
  a->cfg.addr = DEFAULT_ADDR;
  a->cfg.pipein = DEFAULT_PIPEIN;
  a->cfg.pipeout = DEFAULT_PIPEOUT;
  a->cfg.max_frame = DEFAULT_MAX_FRAME;
  a->next_id = 1;
  a->by_id.by_id = true;
  parse_args(argc, argv, &a->cfg);

  setup_signals();
  if (a->cfg.access_log) {
    a->access_log = fopen(a->cfg.access_log, "a");
    if (!a->access_log) {
      logmsg("cannot open the access log %s: %s", a->cfg.access_log, strerror(errno));
      return 1;
    }
  }
  a->mgr = wss_mgr_new(NULL);
  if (!a->mgr) {
    logmsg("cannot create the event manager");
    return 1;
  }
  setup_io(a);
  start_listener(a);
  run_manager(a);

  for (;;) {
    int64_t now = now_ms();
    if (a->stopping && (a->by_conn.count == 0 || now >= a->deadline)) break;

    struct pollfd pfd[2 + 2 + 2];
    int in_at[2] = {-1, -1}, out_at[2] = {-1, -1};
    nfds_t n = 0;
    pfd[n++] = (struct pollfd){.fd = sig_pipe[0], .events = POLLIN};
    pfd[n++] = (struct pollfd){.fd = wss_mgr_fd(a->mgr), .events = POLLIN};
    for (size_t i = 0; i < a->n_in && !a->stopping; i++) {
      if (a->in[i].fd < 0) continue;
      in_at[i] = (int) n;
      pfd[n++] = (struct pollfd){.fd = a->in[i].fd, .events = POLLIN};
    }
    for (size_t i = 0; i < a->n_out; i++) {
      if (a->out[i].fd < 0 || a->out[i].qlen == 0) continue;
      out_at[i] = (int) n;
      pfd[n++] = (struct pollfd){.fd = a->out[i].fd, .events = POLLOUT};
    }
    int timeout = a->stopping ? (int) (a->deadline - now) : -1;
    if (poll(pfd, n, timeout) < 0 && errno != EINTR) {
      logmsg("poll: %s", strerror(errno));
      return 1;
    }

    if (pfd[0].revents & POLLIN) {
      unsigned char sig[16];
      while (read(sig_pipe[0], sig, sizeof sig) > 0) {
      }
      if (a->stopping) {
        a->deadline = now; /* a second signal: do not wait any longer */
      } else {
        logmsg("shutting down");
        begin_shutdown(a);
      }
    }
    for (size_t i = 0; i < a->n_in; i++) {
      if (in_at[i] >= 0 && pfd[in_at[i]].revents && !a->stopping) input_readable(a, &a->in[i]);
    }
    for (size_t i = 0; i < a->n_out; i++) {
      if (out_at[i] >= 0 && pfd[out_at[i]].revents) out_flush(&a->out[i]);
    }
    run_manager(a);
  }

  /* Clients that did not answer the close in time are closed by wss_mgr_free; a strict
   * reader still hears of them. */
  for (size_t i = 0; a->by_conn.slot && i <= a->by_conn.mask; i++) {
    struct client *c = a->by_conn.slot[i];
    if (c && a->cfg.strict && !a->cfg.echo) notify(a, c->id, TYPE_CLOSE, NULL, 0);
  }
  for (size_t i = 0; i < a->n_out; i++) { /* last close notifications, best effort */
    out_flush(&a->out[i]);
    if (a->out[i].saved_flags >= 0) fcntl(STDOUT_FILENO, F_SETFL, a->out[i].saved_flags);
    if (a->out[i].path && a->out[i].fd >= 0) close(a->out[i].fd);
    free(a->out[i].q);
  }
  wss_mgr_free(a->mgr);
  for (size_t i = 0; a->by_conn.slot && i <= a->by_conn.mask; i++) free(a->by_conn.slot[i]);
  free(a->by_conn.slot);
  free(a->by_id.slot);
  for (size_t i = 0; i < a->n_in; i++) {
    if (a->in[i].path && a->in[i].fd >= 0) close(a->in[i].fd);
    if (a->in[i].keep_fd >= 0) close(a->in[i].keep_fd);
    free(a->in[i].buf);
  }
  if (a->access_log) fclose(a->access_log);
  logmsg("stopped");
  return 0;
}
