/* Robustness of the C API in a plain C host: default signal dispositions, no Rust
 * runtime, only include/wsserver.h, libc and pthreads.
 *
 *  - vanish:     a peer that goes away (FIN, RST, half-close) while the server writes,
 *                for every kind of write the library makes, plain and TLS: the process
 *                must not die of SIGPIPE, the connection gets its WSS_EV_CLOSE, and the
 *                same manager then serves a fresh client.
 *  - threads:    1-16 threads hammering wss_mgr_wakeup / wss_send_threadsafe while one
 *                thread polls: poll latency and memory stay bounded, everything accepted
 *                arrives once and in order; a small queue answers WSS_RESULT_LIMIT;
 *                wss_mgr_free racing with producers and with a thread inside a poll.
 *  - files:      a FIFO, /dev/zero or a directory where a file is expected (static files,
 *                TLS certificate, key and CA): 404 or WSS_RESULT_TLS_CONFIG, promptly.
 *  - ids, timers, headers, contract: forged ids with bits 53-63 set, far timers,
 *                header injection and framing headers in every header-line parameter,
 *                parent ids, listener peers, bracketless IPv6, huge URLs.
 *
 * Each scenario runs in a fork()ed child with a time limit, so that a crash (SIGPIPE) or
 * a hang (a FIFO open, a poll that never returns) is reported as a failure of that
 * scenario ("killed by signal N", "timed out") and the others still run. Children count
 * their CHECKs in shared memory, so one killed half-way still reports what it checked.
 *
 * Peers: the library's own client, in a second manager of the same process (tcp://,
 * ws://, and for TLS tls:// and wss:// with tls_insecure_skip_verify), connects through
 * a small TCP relay run by this program; the relay's socket towards the server is the
 * one that vanishes, so the three ways of going are the same for plain and TLS peers:
 * FIN (close with nothing unread), RST (SO_LINGER {1,0}, close), and half-close
 * (shutdown(SHUT_WR); the server writes into the half-open peer, which then closes
 * without reading, so the kernel answers with a RST). The writes that follow are made
 * without a poll in between, so they meet the dead socket before the library could
 * learn by reading that the peer is gone: on a library that writes without MSG_NOSIGNAL
 * the process dies of SIGPIPE, which the parent reports as "killed by signal 13".
 *
 * Usage: robustness_test [--valgrind] [-v] [scenario-name-substring...]
 * --valgrind shortens the thread phases and stretches time limits. The TLS certificate
 * and key come from WSS_TEST_TLS_CERT / WSS_TEST_TLS_KEY, else openssl makes them in
 * the temp dir. Prints "c robustness_test: N passed, M failed"; exit status 1 on failure.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "wsserver.h"

/* ------------------------------------------------------------------------------------ */
/* Checks, counted in memory shared with the parent                                     */

typedef struct {
  atomic_int passed, failed;
} tally_t;

static tally_t parent_tally;
static tally_t *tally = &parent_tally;
static const char *scen = "main";
static char where[400] = ""; /* the case under way, printed with a failed CHECK */
static atomic_int printed;   /* failure lines printed by this process */
static int valgrind_mode, verbose;

static void fail_line(int line, const char *what) {
  if (atomic_fetch_add(&printed, 1) < 40)
    fprintf(stderr, "%s:%d: [%s%s%s] %s\n", __FILE__, line, scen, where[0] ? " " : "", where, what);
}

static void check_(int ok, int line, const char *expr) {
  if (ok) {
    atomic_fetch_add(&tally->passed, 1);
  } else {
    atomic_fetch_add(&tally->failed, 1);
    char msg[300];
    snprintf(msg, sizeof msg, "CHECK(%s) failed", expr);
    fail_line(line, msg);
  }
}

static void expect_(wss_result got, wss_result want, int line, const char *call, const char *w) {
  if (got == want) {
    atomic_fetch_add(&tally->passed, 1);
  } else {
    atomic_fetch_add(&tally->failed, 1);
    char msg[400];
    snprintf(msg, sizeof msg, "%s gave %u (%s), want %s", call, (unsigned) got, wss_result_str(got), w);
    fail_line(line, msg);
  }
}

#define CHECK(expr) check_((expr) ? 1 : 0, __LINE__, #expr)
#define EXPECT(call, want) expect_((call), (want), __LINE__, #call, #want)

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...) {
  if (!verbose) return;
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "  [%s] ", scen);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

/* ------------------------------------------------------------------------------------ */
/* Time, memory, signals                                                                */

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void sleep_ms(double ms) {
  struct timespec ts = {(time_t) (ms / 1000), (long) ((ms - 1000.0 * (time_t) (ms / 1000)) * 1e6)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* A time bound, stretched under valgrind. */
static double bound(double ms) { return valgrind_mode ? ms * 10 : ms; }

static long rss_of(pid_t pid) { /* resident bytes, -1 if unknown */
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/statm", (int) pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  long size = 0, res = -1;
  if (fscanf(f, "%ld %ld", &size, &res) != 2) res = -1;
  fclose(f);
  return res < 0 ? -1 : res * sysconf(_SC_PAGESIZE);
}

static struct sigaction sig0[NSIG];
static int sig0_ok[NSIG];
static sigset_t mask0;

static void snapshot_signals(void) {
  for (int s = 1; s < NSIG; s++) sig0_ok[s] = sigaction(s, NULL, &sig0[s]) == 0;
  pthread_sigmask(SIG_SETMASK, NULL, &mask0);
}

/* The library must not change any signal disposition (nor this thread's mask). */
static void check_signals(void) {
  int changed = 0;
  for (int s = 1; s < NSIG; s++) {
    struct sigaction sa;
    if (!sig0_ok[s] || sigaction(s, NULL, &sa) != 0) continue;
    if (sa.sa_handler != sig0[s].sa_handler || (sa.sa_flags & SA_SIGINFO) != (sig0[s].sa_flags & SA_SIGINFO)) {
      fprintf(stderr, "[%s] the disposition of signal %d (%s) changed\n", scen, s, strsignal(s));
      changed++;
    }
  }
  CHECK(changed == 0);
  struct sigaction pipe_now;
  CHECK(sigaction(SIGPIPE, NULL, &pipe_now) == 0 && pipe_now.sa_handler == SIG_DFL);
  sigset_t m;
  pthread_sigmask(SIG_SETMASK, NULL, &m);
  int mask_changed = 0;
  for (int s = 1; s < NSIG; s++) mask_changed += sigismember(&m, s) != sigismember(&mask0, s);
  CHECK(mask_changed == 0);
}

/* ------------------------------------------------------------------------------------ */
/* Fixtures shared by the scenarios                                                     */

static char tmpdir[256], bigfile[300], fifo[300], certfile[300], keyfile[300], okfile[300];
static int have_tls;
#define BIGFILE_BYTES (8u << 20)
static uint8_t big[1 << 20]; /* printable pattern: valid as text and as binary */
#define KB100 100000

static void set_nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

static int listen_local(uint16_t *port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || bind(fd, (struct sockaddr *) &a, sizeof a) != 0 || listen(fd, 16) != 0 ||
      getsockname(fd, (struct sockaddr *) &a, &len) != 0) {
    if (fd >= 0) close(fd);
    return -1;
  }
  *port = ntohs(a.sin_port);
  set_nonblock(fd);
  return fd;
}

static int connect_local(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd >= 0 && connect(fd, (struct sockaddr *) &a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Writes everything (MSG_NOSIGNAL: this program keeps SIGPIPE's default action). */
static int send_all(int fd, const void *p, size_t n) {
  const char *c = p;
  double t0 = now_ms();
  while (n > 0 && now_ms() - t0 < 5000) {
    ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
    if (w > 0) {
      c += w;
      n -= (size_t) w;
    } else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
      struct pollfd pf = {fd, POLLOUT, 0};
      poll(&pf, 1, 10);
    } else {
      return -1;
    }
  }
  return n == 0 ? 0 : -1;
}

typedef struct {
  char *p;
  size_t n, cap;
} buf_t;

static void buf_add(buf_t *b, const void *p, size_t n) {
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + n + 1) cap *= 2;
    char *q = realloc(b->p, cap);
    if (!q) abort();
    b->p = q;
    b->cap = cap;
  }
  memcpy(b->p + b->n, p, n);
  b->n += n;
  b->p[b->n] = 0;
}

static void buf_free(buf_t *b) {
  free(b->p);
  memset(b, 0, sizeof *b);
}

/* Reads what is there without waiting; returns 0 on EOF or error, else 1. */
static int read_avail(int fd, buf_t *b) {
  char tmp[65536];
  for (int i = 0; i < 64; i++) {
    ssize_t n = recv(fd, tmp, sizeof tmp, MSG_DONTWAIT);
    if (n > 0) {
      buf_add(b, tmp, (size_t) n);
    } else if (n == 0) {
      return 0;
    } else {
      return errno == EAGAIN || errno == EINTR;
    }
  }
  return 1;
}

static size_t count_str(const char *hay, const char *needle) {
  size_t n = 0;
  for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle)) n++;
  return n;
}

static int str_is(wss_str s, const char *c) { return s.len == strlen(c) && memcmp(s.ptr, c, s.len) == 0; }

/* ------------------------------------------------------------------------------------ */
/* A server manager with a default behaviour and one "target" connection               */

enum { L_HTTP, L_WS, L_TCP };
#define MAX_TRACK 512

typedef struct {
  wss_mgr *m;
  wss_id lid;
  int lkind, tls;
  uint16_t port;
  /* The next accepted connection becomes the target when `capture` is set: its requests
   * are held (counted in `pending`), its data is not echoed. */
  int capture;
  wss_id target;
  int ready, pending, closed, errors, after_close, errors_after_close_gone;
  uint32_t close_flags;
  /* Parent bookkeeping for every accepted connection. */
  wss_id acc_conn[MAX_TRACK], acc_parent[MAX_TRACK];
  int nacc, seen_kind[16], bad_parent_kind[16], accept_bad_parent, high_ids;
  wss_id listeners[8];
  int nlisteners;
} srv_t;

static void srv_init(srv_t *s) {
  memset(s, 0, sizeof *s);
  s->m = wss_mgr_new(NULL);
  CHECK(s->m != NULL);
}

static wss_result srv_listen(srv_t *s, int lkind, int tls, const wss_listen_opts *extra) {
  static const char *schemes[2][3] = {{"http", "ws", "tcp"}, {"https", "wss", "tls"}};
  char url[64];
  snprintf(url, sizeof url, "%s://127.0.0.1:0", schemes[tls][lkind]);
  wss_listen_opts o;
  if (extra) {
    o = *extra;
  } else {
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
  }
  if (tls) {
    o.tls_cert = certfile;
    o.tls_key = keyfile;
  }
  wss_id id = 0;
  wss_result r = wss_mgr_listen(s->m, url, &o, &id);
  if (r == WSS_RESULT_OK) {
    s->lid = id;
    s->lkind = lkind;
    s->tls = tls;
    if (s->nlisteners < 8) s->listeners[s->nlisteners++] = id;
    CHECK(wss_listener_port(s->m, id, &s->port) == WSS_RESULT_OK && s->port != 0);
  } else {
    fprintf(stderr, "[%s] listen %s: %s\n", scen, url, wss_mgr_last_error(s->m));
  }
  return r;
}

static wss_id *parent_of(srv_t *s, wss_id conn) {
  for (int i = 0; i < s->nacc; i++)
    if (s->acc_conn[i] == conn) return &s->acc_parent[i];
  return NULL;
}

static void srv_event(srv_t *s, const wss_event *ev) {
  if (ev->conn >> 53 || ev->parent >> 53) s->high_ids++;
  if (ev->kind < 16) s->seen_kind[ev->kind]++;
  if (ev->kind == WSS_EV_ACCEPT) {
    int known = 0;
    for (int i = 0; i < s->nlisteners; i++) known |= ev->parent == s->listeners[i];
    if (!known) s->accept_bad_parent++;
    if (s->nacc < MAX_TRACK) {
      s->acc_conn[s->nacc] = ev->conn;
      s->acc_parent[s->nacc++] = ev->parent;
    }
    if (s->capture && !s->target) s->target = ev->conn;
    return;
  }
  wss_id *p = parent_of(s, ev->conn);
  if (p && ev->parent != *p && ev->kind < 16) s->bad_parent_kind[ev->kind]++;
  if (s->target && ev->conn == s->target) {
    if (s->closed) {
      s->after_close++;
      if (ev->kind != WSS_EV_ERROR) note("event %u (code %d) after the target's CLOSE", (unsigned) ev->kind, ev->code);
    }
    switch (ev->kind) {
    case WSS_EV_HTTP_MSG:
      s->ready = 1;
      s->pending++;
      break;
    case WSS_EV_WS_OPEN:
    case WSS_EV_READ:
      s->ready = 1;
      break;
    case WSS_EV_ERROR:
      s->errors++;
      if (s->closed && (ev->code == (int32_t) WSS_RESULT_NOT_FOUND || ev->code == (int32_t) WSS_RESULT_CLOSED))
        s->errors_after_close_gone++;
      note("target error %d%s: %.*s", ev->code, s->closed ? " after CLOSE" : "", (int) ev->data.len, (const char *) ev->data.ptr);
      break;
    case WSS_EV_CLOSE:
      s->closed = 1;
      s->close_flags = ev->flags;
      break;
    default:
      break;
    }
    return;
  }
  /* Everyone else gets answers: HTTP "fresh:<path>", WebSocket and tcp echoes. */
  if (ev->kind == WSS_EV_HTTP_MSG) {
    wss_http_request req;
    char body[300] = "fresh:";
    if (wss_http_request_get(s->m, ev->conn, &req) == WSS_RESULT_OK && req.path.len < 200) {
      memcpy(body + 6, req.path.ptr, req.path.len);
      body[6 + req.path.len] = 0;
    }
    wss_http_reply(s->m, ev->conn, 200, "Content-Type: text/plain\r\n", (const uint8_t *) body, strlen(body));
  } else if (ev->kind == WSS_EV_WS_MSG) {
    wss_ws_send(s->m, ev->conn, ev->data.ptr, ev->data.len, ev->flags & WSS_FLAG_TEXT ? WSS_OP_TEXT : WSS_OP_BINARY);
  } else if (ev->kind == WSS_EV_READ && p) {
    wss_conn_send(s->m, ev->conn, ev->data.ptr, ev->data.len);
  }
}

static void srv_drain(srv_t *s) {
  wss_event ev;
  for (int i = 0; i < 100000 && wss_mgr_next_event(s->m, &ev); i++) srv_event(s, &ev);
}

static void srv_poll(srv_t *s, int ms) {
  wss_mgr_poll(s->m, ms, NULL);
  srv_drain(s);
}

static void srv_target_reset(srv_t *s) {
  s->capture = 0;
  s->target = 0;
  s->ready = s->pending = s->closed = s->errors = s->after_close = s->errors_after_close_gone = 0;
  s->close_flags = 0;
}

/* A client manager (one connection), the peer of the server under test. */
typedef struct {
  wss_mgr *m;
  wss_id id;
  int connected, tls_ready, ws_open, closed, errors;
  buf_t rx;
} cli_t;

static int cli_open(cli_t *c, const char *url) {
  memset(c, 0, sizeof *c);
  c->m = wss_mgr_new(NULL);
  if (!c->m) return 0;
  wss_connect_opts o;
  memset(&o, 0, sizeof o);
  o.struct_size = sizeof o;
  o.tls_insecure_skip_verify = true; /* the test certificate is self-signed */
  wss_result r = wss_mgr_connect(c->m, url, &o, &c->id);
  if (r != WSS_RESULT_OK) fprintf(stderr, "[%s] connect %s: %s\n", scen, url, wss_mgr_last_error(c->m));
  return r == WSS_RESULT_OK;
}

static void cli_pump(cli_t *c) {
  if (!c->m) return;
  wss_mgr_poll(c->m, 0, NULL);
  wss_event ev;
  for (int i = 0; i < 100000 && wss_mgr_next_event(c->m, &ev); i++) {
    switch (ev.kind) {
    case WSS_EV_CONNECT: c->connected = 1; break;
    case WSS_EV_TLS_READY: c->tls_ready = 1; break;
    case WSS_EV_WS_OPEN: c->ws_open = 1; break;
    case WSS_EV_READ:
    case WSS_EV_WS_MSG: buf_add(&c->rx, ev.data.ptr, ev.data.len); break;
    case WSS_EV_ERROR: c->errors++; break;
    case WSS_EV_CLOSE: c->closed = 1; break;
    default: break;
    }
  }
}

static void cli_close(cli_t *c) {
  if (c->m) CHECK(wss_mgr_free(c->m) == WSS_RESULT_OK);
  c->m = NULL;
  buf_free(&c->rx);
}

/* The relay: accepts the client manager's connection (a) and connects to the server (b). */
typedef struct {
  int ls, a, b, fwd;
  uint16_t port;
} relay_t;

static int forward(int from, int to) { /* 0 when `from` hit EOF or an error */
  char tmp[65536];
  for (int i = 0; i < 16; i++) {
    ssize_t n = recv(from, tmp, sizeof tmp, MSG_DONTWAIT);
    if (n > 0) {
      if (send_all(to, tmp, (size_t) n) != 0) return 0;
    } else if (n == 0) {
      shutdown(to, SHUT_WR);
      return 0;
    } else {
      return errno == EAGAIN || errno == EINTR;
    }
  }
  return 1;
}

static void relay_step(relay_t *r, uint16_t server_port) {
  if (r->a < 0) {
    int fd = accept(r->ls, NULL, NULL);
    if (fd < 0) return;
    set_nonblock(fd);
    r->a = fd;
    r->b = connect_local(server_port);
    if (r->b >= 0) set_nonblock(r->b);
  }
  if (r->fwd && r->a >= 0 && r->b >= 0) {
    forward(r->a, r->b);
    forward(r->b, r->a);
  }
}

/* One turn of everything: server, client, relay; sleeps up to `ms` for activity. */
static void pump(srv_t *s, cli_t *c, relay_t *r, int ms) {
  srv_poll(s, 0);
  if (c) cli_pump(c);
  if (r) relay_step(r, s->port);
  struct pollfd p[5];
  int n = 0;
  p[n++] = (struct pollfd){wss_mgr_fd(s->m), POLLIN, 0};
  if (c && c->m) p[n++] = (struct pollfd){wss_mgr_fd(c->m), POLLIN, 0};
  if (r && r->a < 0) p[n++] = (struct pollfd){r->ls, POLLIN, 0};
  if (r && r->fwd && r->a >= 0) p[n++] = (struct pollfd){r->a, POLLIN, 0};
  if (r && r->fwd && r->b >= 0) p[n++] = (struct pollfd){r->b, POLLIN, 0};
  poll(p, (nfds_t) n, ms);
}

/* A direct client proves the server still answers correctly. */
static void fresh_check(srv_t *s) {
  static const char *schemes[2][3] = {{"tcp", "ws", "tcp"}, {"tls", "wss", "tls"}};
  char url[96];
  snprintf(url, sizeof url, "%s://127.0.0.1:%u/fresh", schemes[s->tls][s->lkind], (unsigned) s->port);
  cli_t c;
  int ok = 0, sent = 0;
  if (cli_open(&c, url)) {
    const char *want = s->lkind == L_HTTP ? "\r\n\r\nfresh:/fresh" : "fresh";
    if (s->lkind == L_HTTP) {
      const char *req = "GET /fresh HTTP/1.1\r\nHost: x\r\n\r\n";
      sent = wss_conn_send(c.m, c.id, (const uint8_t *) req, strlen(req)) == WSS_RESULT_OK;
    } else if (s->lkind == L_TCP) {
      sent = wss_conn_send(c.m, c.id, (const uint8_t *) "fresh", 5) == WSS_RESULT_OK;
    }
    double t0 = now_ms();
    while (!ok && !c.closed && now_ms() - t0 < bound(5000)) {
      pump(s, &c, NULL, 1);
      if (s->lkind == L_WS && c.ws_open && !sent)
        sent = wss_ws_send(c.m, c.id, (const uint8_t *) "fresh", 5, WSS_OP_TEXT) == WSS_RESULT_OK;
      ok = c.rx.n > 0 && strstr(c.rx.p, want) != NULL;
    }
    if (s->lkind == L_HTTP) ok = ok && strncmp(c.rx.p, "HTTP/1.1 200 OK\r\n", 17) == 0;
  }
  CHECK(sent && ok);
  cli_close(&c);
}

enum {
  K_REPLY_SMALL, K_REPLY_1M, K_CHUNKED, K_SERVE_FILE, K_SERVE_DIR,
  K_WS_100K, K_WS_SMALL, K_WS_FRAGMENT, K_WS_BROADCAST, K_WS_CLOSE, K_WS_PING, K_WS_THREADSAFE,
  K_CONN_SEND, K_TCP_THREADSAFE, K_COUNT
};
static const char *kind_names[K_COUNT] = {
    "reply-small", "reply-1MiB", "chunked", "serve-file", "serve-dir",
    "ws-send-100KB", "ws-send-small", "ws-fragment", "ws-broadcast", "ws-close", "ws-ping", "ws-threadsafe",
    "conn-send", "tcp-threadsafe"};
static int kind_listener(int k) { return k <= K_SERVE_DIR ? L_HTTP : k <= K_WS_THREADSAFE ? L_WS : L_TCP; }

enum { M_FIN, M_RST, M_HALF };
static const char *mode_names[3] = {"FIN", "RST", "half-close"};

/* The writes of one kind, made step by step; `done` once the kind has nothing more to
 * write or a call failed. Every result must be one the header lists for a connection
 * that is gone or going. */
typedef struct {
  int kind, calls, ok, done, bad, step, fin_mode;
  wss_result first, last_bad;
} wr_t;

/* The results the header lists for the write calls used here (wss_http_reply,
 * wss_http_chunked_begin, wss_http_chunk, wss_http_serve_*, wss_ws_send,
 * wss_ws_send_fragment, wss_ws_close, wss_ws_broadcast, wss_conn_send) when the
 * connection is gone or going: CLOSED, NOT_FOUND (its CLOSE was drained), LIMIT. */
static void wr_result(wr_t *w, wss_result r) {
  if (w->calls == 0) w->first = r;
  w->calls++;
  if (r == WSS_RESULT_OK) {
    w->ok++;
  } else {
    w->done = 1;
    if (r != WSS_RESULT_CLOSED && r != WSS_RESULT_NOT_FOUND && r != WSS_RESULT_LIMIT) {
      w->bad++;
      w->last_bad = r;
    }
  }
}

static void write_step(srv_t *s, wr_t *w) {
  wss_mgr *m = s->m;
  wss_id t = s->target;
  int step = w->step++;
  switch (w->kind) {
  case K_REPLY_SMALL:
  case K_REPLY_1M:
  case K_SERVE_FILE:
  case K_SERVE_DIR: /* one answer per pipelined request (3 were sent) */
    if (s->pending == 0) break;
    s->pending--;
    if (w->kind == K_REPLY_SMALL) {
      wr_result(w, wss_http_reply(m, t, 200, "Content-Type: text/plain\r\n", big, 1000));
    } else if (w->kind == K_REPLY_1M) {
      wr_result(w, wss_http_reply(m, t, 200, NULL, big, sizeof big));
    } else if (w->kind == K_SERVE_FILE) {
      wr_result(w, wss_http_serve_file(m, t, bigfile, NULL));
    } else {
      wss_serve_opts o;
      memset(&o, 0, sizeof o);
      o.struct_size = sizeof o;
      o.root_dir = tmpdir;
      wr_result(w, wss_http_serve_dir(m, t, &o));
    }
    if (w->calls >= 3) w->done = 1;
    break;
  case K_CHUNKED: /* 64 x 64 KiB, eight a step */
    if (step == 0) {
      wr_result(w, wss_http_chunked_begin(m, t, 200, "Content-Type: application/octet-stream\r\n"));
      break;
    }
    for (int i = 0; i < 8 && !w->done; i++) wr_result(w, wss_http_chunk(m, t, big, 65536));
    if (!w->done && w->calls > 64) {
      wr_result(w, wss_http_chunk(m, t, NULL, 0));
      w->done = 1;
    }
    break;
  case K_WS_100K:
    wr_result(w, wss_ws_send(m, t, big, KB100, WSS_OP_BINARY));
    if (w->calls >= 20) w->done = 1;
    break;
  case K_WS_SMALL:
    for (int i = 0; i < 4 && !w->done; i++) wr_result(w, wss_ws_send(m, t, big, 16, WSS_OP_TEXT));
    if (w->calls >= 100) w->done = 1;
    break;
  case K_WS_FRAGMENT: /* a message of 40 pieces of 32 KiB */
    for (int i = 0; i < 4 && !w->done; i++) {
      int n = w->calls;
      wr_result(w, wss_ws_send_fragment(m, t, big, 32768, n == 0 ? WSS_OP_BINARY : WSS_OP_CONTINUATION, n == 39));
      if (n == 39) w->done = 1;
    }
    break;
  case K_WS_BROADCAST: { /* 100 KB and small, alternately, to the target's listener */
    size_t sent = 0;
    wss_result r = wss_ws_broadcast(m, s->lid, big, step % 2 ? 16 : KB100, WSS_OP_BINARY, &sent);
    wr_result(w, r);
    if (step == 0 && r == WSS_RESULT_OK && w->fin_mode) CHECK(sent >= 1); /* FIN: the first write goes out */
    if (sent == 0 || w->calls >= 20) w->done = 1;
    break;
  }
  case K_WS_CLOSE: /* a message first (its RST makes the close frame's write the failing one) */
    if (step == 0) {
      wr_result(w, wss_ws_send(m, t, big, 16, WSS_OP_TEXT));
    } else {
      wr_result(w, wss_ws_close(m, t, 1000, "bye"));
      w->done = 1;
    }
    break;
  case K_WS_PING:
    for (int i = 0; i < 2 && !w->done; i++) wr_result(w, wss_ws_send(m, t, (const uint8_t *) "ping", 4, WSS_OP_PING));
    if (w->calls >= 40) w->done = 1;
    break;
  case K_CONN_SEND:
    wr_result(w, wss_conn_send(m, t, big, step % 2 ? 16 : KB100));
    if (w->calls >= 20) w->done = 1;
    break;
  default: /* the thread-safe kinds write from another thread */
    w->done = 1;
    break;
  }
}

/* The peer's socket goes away: FIN (close, nothing unread), RST (SO_LINGER {1,0}), or
 * half-close (shutdown(SHUT_WR), then close without reading what came meanwhile). */
static void vanish_socket(int fd, int mode) {
  if (mode == M_FIN) {
    char tmp[65536];
    while (recv(fd, tmp, sizeof tmp, MSG_DONTWAIT) > 0) {
    } /* nothing unread: close sends a FIN, not a RST */
    close(fd);
  } else if (mode == M_RST) {
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
  } else {
    shutdown(fd, SHUT_WR);
    sleep_ms(5); /* what the server writes meanwhile is never read: */
    close(fd);   /* closing with unread data answers the server with a RST */
  }
}

typedef struct {
  wss_mgr *m;
  wss_id conn;
  uint32_t op;
  int fd, mode;
  double delay;
  atomic_int writing, finished;
  int ok, limit, bad;
} tsvanish_t;

static void *tswriter_main(void *arg) { /* 100 KB thread-safe sends while the peer goes */
  tsvanish_t *t = arg;
  double t0 = now_ms();
  for (int i = 0; i < 400 && now_ms() - t0 < bound(1000) && atomic_load(&t->writing); i++) {
    wss_result r = wss_send_threadsafe(t->m, t->conn, big, KB100, t->op);
    if (r == WSS_RESULT_OK) t->ok++;
    else if (r == WSS_RESULT_LIMIT) t->limit++;
    else t->bad++;
    if (i % 8 == 7) sleep_ms(1);
  }
  atomic_store(&t->finished, 1);
  return NULL;
}

static void *vanisher_main(void *arg) { /* the peer reads, then vanishes in the middle of things */
  tsvanish_t *t = arg;
  char tmp[65536];
  for (double t0 = now_ms(); now_ms() - t0 < t->delay;) {
    struct pollfd pf = {t->fd, POLLIN, 0};
    poll(&pf, 1, 1);
    while (recv(t->fd, tmp, sizeof tmp, MSG_DONTWAIT) > 0) {
    }
  }
  vanish_socket(t->fd, t->mode);
  return NULL;
}

/* wss_send_threadsafe while the peer goes. Each poll looks at the sockets before it runs
 * what other threads queued, so a peer gone before a poll is seen first and the queued
 * sends are refused; the sends that meet a dead socket are those of a poll during which
 * the peer goes. So the peer vanishes from a third thread while a writer thread keeps
 * the queue full of 100 KB sends and this thread polls. */
static void threadsafe_vanish(srv_t *s, relay_t *r, int kind, int mode) {
  tsvanish_t t;
  memset(&t, 0, sizeof t);
  t.m = s->m;
  t.conn = s->target;
  t.op = kind == K_WS_THREADSAFE ? WSS_OP_BINARY : 0;
  t.fd = r->b;
  t.mode = mode;
  t.delay = bound(30);
  atomic_init(&t.writing, 1);
  atomic_init(&t.finished, 0);
  r->fwd = 0;
  r->b = -1; /* the vanisher closes it */
  pthread_t wt, vt;
  int w_ok = pthread_create(&wt, NULL, tswriter_main, &t) == 0;
  int v_ok = pthread_create(&vt, NULL, vanisher_main, &t) == 0;
  CHECK(w_ok && v_ok);
  if (!v_ok) close(t.fd);
  double t0 = now_ms();
  while (!(s->closed && (!w_ok || atomic_load(&t.finished))) && now_ms() - t0 < bound(5000)) srv_poll(s, 1);
  atomic_store(&t.writing, 0);
  if (w_ok) pthread_join(wt, NULL);
  if (v_ok) pthread_join(vt, NULL);
  for (int i = 0; i < 10; i++) srv_poll(s, 1); /* late reports of the queued sends */
  note("%s: %d sends queued, %d LIMIT, %d errors, closed %d, %d events after CLOSE", where, t.ok, t.limit, s->errors,
       s->closed, s->after_close);
  CHECK(s->closed);
  CHECK(t.ok > 0 && t.bad == 0);
  /* WSS_EV_CLOSE is a connection's last event; only thread-safe sends that were queued
   * for it may still report afterwards that it is gone (header: wss_send_threadsafe). */
  CHECK(s->after_close == s->errors_after_close_gone);
}

static void vanish_case(srv_t *s, relay_t *r, int kind, int mode) {
  snprintf(where, sizeof where, "%s %s %s", s->tls ? "tls" : "plain", kind_names[kind], mode_names[mode]);
  static const char *schemes[2][3] = {{"tcp", "ws", "tcp"}, {"tls", "wss", "tls"}};
  char url[96];
  snprintf(url, sizeof url, "%s://127.0.0.1:%u/v", schemes[s->tls][s->lkind], (unsigned) r->port);
  srv_target_reset(s);
  s->capture = 1;
  r->a = r->b = -1;
  r->fwd = 1;
  cli_t c;
  int opened = cli_open(&c, url);
  CHECK(opened);
  if (s->lkind == L_HTTP) {
    const char *req = "GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n";
    for (int i = 0; i < 3; i++) /* pipelined: one-shot writes get several tries */
      CHECK(wss_conn_send(c.m, c.id, (const uint8_t *) req, strlen(req)) == WSS_RESULT_OK);
  } else if (s->lkind == L_TCP) {
    CHECK(wss_conn_send(c.m, c.id, (const uint8_t *) "hello", 5) == WSS_RESULT_OK);
  }
  double t0 = now_ms();
  while (opened && !(s->ready && (s->lkind != L_WS || c.ws_open) && (!s->tls || c.tls_ready)) &&
         now_ms() - t0 < bound(5000))
    pump(s, &c, r, 1);
  CHECK(s->ready && r->b >= 0);
  if (!s->ready || r->b < 0) goto out;
  for (int i = 0; i < 5; i++) pump(s, &c, r, 1); /* handshake leftovers through the relay */
  if (kind == K_WS_THREADSAFE || kind == K_TCP_THREADSAFE) {
    threadsafe_vanish(s, r, kind, mode);
    goto out;
  }

  /* The peer goes away. */
  wr_t w;
  memset(&w, 0, sizeof w);
  w.kind = kind;
  w.fin_mode = mode == M_FIN;
  r->fwd = 0;
  if (mode == M_HALF) {
    shutdown(r->b, SHUT_WR);
    if (s->lkind == L_HTTP) { /* the server reads the EOF and still answers the requests */
      double t1 = now_ms();
      while (now_ms() - t1 < 20) srv_poll(s, 1);
    }
    write_step(s, &w); /* into the half-open peer, which never reads it: */
    wss_mgr_flush(s->m);
    sleep_ms(5);
    close(r->b); /* closing with unread data answers the server with a RST */
  } else {
    vanish_socket(r->b, mode);
  }
  r->b = -1;
  sleep_ms(20);

  /* Writes the library cannot know to be doomed: no poll in between, so the first write
   * draws the RST and the next ones hit EPIPE. */
  for (int i = 0; i < 4 && !w.done; i++) {
    write_step(s, &w);
    wss_mgr_flush(s->m);
    sleep_ms(5);
    srv_drain(s); /* a pipelined request may be delivered without a poll */
  }
  /* Then the event loop goes on: buffered output is flushed into the dead socket. */
  t0 = now_ms();
  while (!s->closed && now_ms() - t0 < bound(5000)) {
    if (!w.done) {
      write_step(s, &w);
      wss_mgr_flush(s->m);
    }
    srv_poll(s, 2);
  }
  for (int i = 0; i < 10; i++) srv_poll(s, 1);
  note("%s: first write %u, %d calls, %d ok, %d errors, closed %d (flags %u), %.0f ms", where, (unsigned) w.first,
       w.calls, w.ok, s->errors, s->closed, (unsigned) s->close_flags, now_ms() - t0);
  CHECK(s->closed);
  CHECK(w.bad == 0); /* every write call gave a result its Returns list */
  if (w.bad) fprintf(stderr, "[%s %s] a write gave %u (%s)\n", scen, where, (unsigned) w.last_bad, wss_result_str(w.last_bad));
  /* After a FIN, and into a half-open peer, the socket still takes data: the first write
   * really went out (after a RST the first write may be the one that finds out). */
  if (mode != M_RST) CHECK(w.calls > 0 && w.first == WSS_RESULT_OK);
  CHECK(s->after_close == 0); /* WSS_EV_CLOSE is a connection's last event */
out:
  if (r->b >= 0) close(r->b);
  if (r->a >= 0) close(r->a);
  r->a = r->b = -1;
  cli_close(&c);
  srv_target_reset(s);
  snprintf(where + strlen(where), sizeof where - strlen(where), " then a fresh client");
  fresh_check(s);
  where[0] = 0;
}

/* arg: kind + 100 * tls */
static void scen_vanish(int arg) {
  int kind = arg % 100, tls = arg / 100;
  if (tls && !have_tls) {
    CHECK(!"no TLS certificate");
    return;
  }
  srv_t s;
  srv_init(&s);
  relay_t r = {-1, -1, -1, 0, 0};
  r.ls = listen_local(&r.port);
  CHECK(r.ls >= 0);
  wss_listen_opts lo;
  memset(&lo, 0, sizeof lo);
  lo.struct_size = sizeof lo;
  if (s.m && r.ls >= 0 && srv_listen(&s, kind_listener(kind), tls, &lo) == WSS_RESULT_OK) {
    fresh_check(&s);
    for (int mode = 0; mode < 3; mode++) vanish_case(&s, &r, kind, mode);
  } else {
    CHECK(!"server setup");
  }
  if (r.ls >= 0) close(r.ls);
  CHECK(wss_mgr_free(s.m) == WSS_RESULT_OK);
}

/* ------------------------------------------------------------------------------------ */
/* Threads                                                                              */

#define WAKE_TAG 0xABCu
#define MAXPROD 16

typedef struct {
  wss_mgr *m;
  wss_id conn;     /* wss_send_threadsafe target (0: none) */
  int idx;
  size_t payload;  /* wakeup payload bytes (>= 12) */
  double until;
  atomic_int *stop;
  atomic_int done;
  uint64_t ok, limit, other; /* wakeups; `ok` is also the next sequence number */
  uint64_t sends_ok, sends_limit, sends_other;
} prod_t;

static void *producer_main(void *arg) {
  prod_t *p = arg;
  uint8_t payload[256];
  memset(payload, 'w', sizeof payload);
  uint32_t idx = (uint32_t) p->idx;
  memcpy(payload, &idx, 4);
  /* At least 2048 rounds, even for a thread that starts late (valgrind runs one thread
   * at a time); the clock is read every 256 rounds. */
  for (uint64_t it = 0; !atomic_load(p->stop) && (it < 2048 || it & 255 || now_ms() < p->until); it++) {
    memcpy(payload + 4, &p->ok, 8); /* a sequence number advances only when accepted */
    wss_result r = wss_mgr_wakeup(p->m, WAKE_TAG, payload, p->payload);
    if (r == WSS_RESULT_OK) {
      p->ok++;
    } else if (r == WSS_RESULT_LIMIT) {
      p->limit++;
      sched_yield();
    } else {
      p->other++;
      if (r == WSS_RESULT_FREED) break;
    }
    if (p->conn && it % 64 == 0) {
      char rec[32];
      snprintf(rec, sizeof rec, "P%02d:%010llu\n", p->idx, (unsigned long long) p->sends_ok);
      r = wss_send_threadsafe(p->m, p->conn, (const uint8_t *) rec, 15, 0);
      if (r == WSS_RESULT_OK) p->sends_ok++;
      else if (r == WSS_RESULT_LIMIT) p->sends_limit++;
      else p->sends_other++;
    }
  }
  atomic_store(&p->done, 1);
  return NULL;
}

/* What the polling side saw of the producers. */
typedef struct {
  uint64_t next[MAXPROD], snext[MAXPROD];
  uint64_t disorder, unknown, sdisorder, wakeups;
  buf_t stream;
  size_t parsed;
} seen_t;

static void seen_wakeup(seen_t *v, const wss_event *ev, int n) {
  uint32_t idx;
  uint64_t seq;
  v->wakeups++;
  if (ev->conn != WAKE_TAG || ev->data.len < 12) {
    v->unknown++;
    return;
  }
  memcpy(&idx, ev->data.ptr, 4);
  memcpy(&seq, ev->data.ptr + 4, 8);
  if (idx >= (uint32_t) n) {
    v->unknown++;
  } else if (seq != v->next[idx]) {
    v->disorder++; /* lost, duplicated or out of order */
    v->next[idx] = seq + 1;
  } else {
    v->next[idx]++;
  }
}

static void seen_stream(seen_t *v, int n) {
  while (v->stream.n - v->parsed >= 15) {
    const char *rec = v->stream.p + v->parsed;
    int idx = (rec[1] - '0') * 10 + (rec[2] - '0');
    if (rec[0] != 'P' || rec[3] != ':' || rec[14] != '\n' || idx < 0 || idx >= n) {
      v->sdisorder++;
      v->parsed = v->stream.n; /* the stream is broken: stop reading records */
      return;
    }
    unsigned long long seq = strtoull(rec + 4, NULL, 10);
    if (seq != v->snext[idx]) v->sdisorder++;
    v->snext[idx] = seq + 1;
    v->parsed += 15;
  }
}

/* Samples this process's resident memory from its own thread: a poll that never
 * returns must not hide the growth. */
typedef struct {
  atomic_int stop;
  atomic_long max;
} rss_mon_t;

static void *rss_mon_main(void *arg) {
  rss_mon_t *r = arg;
  while (!atomic_load(&r->stop)) {
    long v = rss_of(getpid());
    if (v > atomic_load(&r->max)) atomic_store(&r->max, v);
    sleep_ms(5);
  }
  return NULL;
}

/* N producers against one polling thread, default queue bound. */
static void scen_hammer(int n) {
  wss_mgr *m = wss_mgr_new(NULL);
  CHECK(m != NULL);
  if (!m) return;
  wss_id lid = 0, conn = 0;
  uint16_t port = 0;
  CHECK(wss_mgr_listen(m, "tcp://127.0.0.1:0", NULL, &lid) == WSS_RESULT_OK);
  CHECK(wss_listener_port(m, lid, &port) == WSS_RESULT_OK);
  int fd = connect_local(port);
  CHECK(fd >= 0);
  wss_event ev;
  for (double t0 = now_ms(); !conn && now_ms() - t0 < bound(3000);) {
    wss_mgr_poll(m, 5, NULL);
    while (wss_mgr_next_event(m, &ev))
      if (ev.kind == WSS_EV_ACCEPT) conn = ev.conn;
  }
  CHECK(conn != 0);
  if (fd >= 0) set_nonblock(fd);

  double dur = valgrind_mode ? 250 : 1500;
  atomic_int stop = 0;
  prod_t prods[MAXPROD];
  pthread_t th[MAXPROD];
  memset(prods, 0, sizeof prods);
  double start = now_ms();
  int started = 0;
  for (int i = 0; i < n; i++) {
    prods[i] = (prod_t){.m = m, .conn = conn, .idx = i, .payload = 12, .until = start + dur, .stop = &stop};
    if (pthread_create(&th[i], NULL, producer_main, &prods[i]) == 0) started++;
  }
  CHECK(started == n);

  seen_t v;
  memset(&v, 0, sizeof v);
  long rss0 = rss_of(getpid());
  rss_mon_t mon;
  atomic_init(&mon.stop, 0);
  atomic_init(&mon.max, rss0);
  pthread_t mon_th;
  int mon_ok = pthread_create(&mon_th, NULL, rss_mon_main, &mon) == 0;
  CHECK(mon_ok);
  double max_lat = 0;
  int bad_polls = 0, conn_errors = 0, conn_closed = 0, joined = 0, complete = 0;
  double hard = start + dur + bound(15000);
  while (now_ms() < hard) {
    double t = now_ms();
    if (wss_mgr_poll(m, 0, NULL) != WSS_RESULT_OK) bad_polls++;
    double lat = now_ms() - t;
    if (lat > max_lat) max_lat = lat;
    while (wss_mgr_next_event(m, &ev)) {
      if (ev.kind == WSS_EV_WAKEUP) seen_wakeup(&v, &ev, n);
      else if (ev.kind == WSS_EV_ERROR && ev.conn == conn) conn_errors++;
      else if (ev.kind == WSS_EV_CLOSE && ev.conn == conn) conn_closed++;
    }
    if (fd >= 0) read_avail(fd, &v.stream);
    seen_stream(&v, n);
    if (!joined) {
      int all = 1;
      for (int i = 0; i < started; i++) all &= atomic_load(&prods[i].done);
      if (all) {
        for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
        joined = 1;
      }
    }
    if (joined) {
      complete = 1;
      for (int i = 0; i < started; i++)
        complete &= v.next[i] == prods[i].ok && v.snext[i] == prods[i].sends_ok;
      if (complete) break;
    }
  }
  if (!joined) { /* only when the poller was stuck: stop the producers for a clean exit */
    atomic_store(&stop, 1);
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
  }
  atomic_store(&mon.stop, 1);
  if (mon_ok) pthread_join(mon_th, NULL);
  long rss_max = atomic_load(&mon.max);
  uint64_t total_ok = 0, total_limit = 0, other = 0, sends = 0;
  for (int i = 0; i < started; i++) {
    total_ok += prods[i].ok;
    total_limit += prods[i].limit + prods[i].sends_limit;
    other += prods[i].other + prods[i].sends_other;
    sends += prods[i].sends_ok;
    CHECK(prods[i].ok > 0 && prods[i].sends_ok > 0); /* every producer got through */
  }
  note("%d producers: %llu wakeups and %llu sends accepted, %llu LIMIT, max poll %.1f ms, rss +%ld MB", n,
       (unsigned long long) total_ok, (unsigned long long) sends, (unsigned long long) total_limit, max_lat,
       (rss_max - rss0) >> 20);
  snprintf(where, sizeof where, "%d producers, max poll latency %.0f ms, rss growth %ld MB", n, max_lat,
           (rss_max - rss0) >> 20);
  CHECK(bad_polls == 0);
  CHECK(max_lat < bound(1000));
  CHECK(rss0 > 0 && rss_max - rss0 < 300L << 20);
  CHECK(other == 0);
  CHECK(complete);                          /* everything accepted arrived... */
  CHECK(v.disorder == 0 && v.unknown == 0); /* ...exactly once, in per-producer order */
  CHECK(v.wakeups == total_ok);
  CHECK(v.sdisorder == 0 && v.stream.n == sends * 15);
  CHECK(conn_errors == 0 && conn_closed == 0);
  where[0] = 0;
  buf_free(&v.stream);
  if (fd >= 0) close(fd);
  CHECK(wss_mgr_free(m) == WSS_RESULT_OK);
}

/* A small queue: pushes are refused with LIMIT, by the documented accounting, and
 * nothing accepted is lost. */
static void scen_limit(int unused) {
  (void) unused;
  wss_mgr_opts mo;
  memset(&mo, 0, sizeof mo);
  mo.struct_size = sizeof mo;
  mo.max_threadsafe_bytes = 64 * 1024;
  wss_mgr *m = wss_mgr_new(&mo);
  CHECK(m != NULL);
  if (!m) return;
  wss_event ev;

  /* The poller does not poll: 100-byte wakeups cost 164 bytes each. */
  uint8_t payload[100];
  memset(payload, 'x', sizeof payload);
  uint64_t ok = 0;
  wss_result r = WSS_RESULT_OK;
  for (int i = 0; i < 100000; i++) {
    memcpy(payload, &ok, 8);
    r = wss_mgr_wakeup(m, 7, payload, sizeof payload);
    if (r != WSS_RESULT_OK) break;
    ok++;
  }
  EXPECT(r, WSS_RESULT_LIMIT);
  CHECK(ok == 65536 / 164);
  /* 100 bytes of room are left: a 100-byte send does not fit, an empty wakeup does. */
  EXPECT(wss_send_threadsafe(m, 12345, payload, 100, WSS_OP_BINARY), WSS_RESULT_LIMIT);
  EXPECT(wss_mgr_wakeup(m, 8, NULL, 0), WSS_RESULT_OK);
  EXPECT(wss_mgr_wakeup(m, 8, NULL, 0), WSS_RESULT_LIMIT);
  uint64_t next = 0, bad = 0, empties = 0;
  for (double t0 = now_ms(); (next < ok || !empties) && now_ms() - t0 < bound(5000);) {
    wss_mgr_poll(m, 10, NULL);
    while (wss_mgr_next_event(m, &ev)) {
      if (ev.kind != WSS_EV_WAKEUP) continue;
      uint64_t seq = UINT64_MAX;
      if (ev.conn == 7 && ev.data.len == 100) memcpy(&seq, ev.data.ptr, 8);
      if (ev.conn == 8 && ev.data.len == 0) empties++;
      else if (seq == next) next++;
      else bad++;
    }
  }
  CHECK(next == ok && bad == 0 && empties == 1);
  EXPECT(wss_mgr_wakeup(m, 7, payload, sizeof payload), WSS_RESULT_OK); /* room again */
  wss_mgr_poll(m, 10, NULL);
  while (wss_mgr_next_event(m, &ev)) {
  }

  /* Four producers against a poller that pauses: LIMIT comes, nothing accepted is lost. */
  int n = 4;
  atomic_int stop = 0;
  prod_t prods[4];
  pthread_t th[4];
  memset(prods, 0, sizeof prods);
  double start = now_ms(), dur = valgrind_mode ? 300 : 1000;
  int started = 0;
  for (int i = 0; i < n; i++) {
    prods[i] = (prod_t){.m = m, .idx = i, .payload = 100, .until = start + dur, .stop = &stop};
    if (pthread_create(&th[i], NULL, producer_main, &prods[i]) == 0) started++;
  }
  CHECK(started == n);
  seen_t v;
  memset(&v, 0, sizeof v);
  int joined = 0, complete = 0;
  while (now_ms() - start < dur + bound(10000)) {
    if (!joined && (int) ((now_ms() - start) / 50) % 2 == 0) {
      sleep_ms(5); /* paused: the queue fills */
      continue;
    }
    wss_mgr_poll(m, 1, NULL);
    while (wss_mgr_next_event(m, &ev))
      if (ev.kind == WSS_EV_WAKEUP) seen_wakeup(&v, &ev, n);
    if (!joined) {
      int all = 1;
      for (int i = 0; i < started; i++) all &= atomic_load(&prods[i].done);
      if (all) {
        for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
        joined = 1;
      }
    } else {
      complete = 1;
      for (int i = 0; i < started; i++) complete &= v.next[i] == prods[i].ok;
      if (complete) break;
    }
  }
  if (!joined) {
    atomic_store(&stop, 1);
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
  }
  uint64_t limits = 0, other = 0, accepted = 0;
  for (int i = 0; i < started; i++) {
    limits += prods[i].limit;
    other += prods[i].other;
    accepted += prods[i].ok;
  }
  note("paused poller: %llu accepted, %llu LIMIT", (unsigned long long) accepted, (unsigned long long) limits);
  CHECK(limits > 0);
  CHECK(other == 0);
  CHECK(complete && v.disorder == 0 && v.unknown == 0 && v.wakeups == accepted);
  CHECK(wss_mgr_free(m) == WSS_RESULT_OK);
}

/* wss_mgr_free racing with producers: no crash, FREED afterwards. */
typedef struct {
  wss_mgr *m;
  atomic_int *go;
  uint64_t ok, limit, freed, other;
} racer_t;

static void *racer_main(void *arg) {
  racer_t *r = arg;
  double t0 = now_ms();
  while (!atomic_load(r->go) && now_ms() - t0 < 5000) sched_yield();
  /* Until FREED, with a generous deadline: under valgrind's scheduler the freeing
   * thread can wait seconds for its turn. The yields keep that wait short. */
  t0 = now_ms();
  for (uint64_t i = 0; now_ms() - t0 < 60000; i++) {
    if (i % 64 == 63) sched_yield();
    wss_result x = i % 2 ? wss_mgr_wakeup(r->m, 1, (const uint8_t *) "abc", 3)
                         : wss_send_threadsafe(r->m, 12345, (const uint8_t *) "abc", 3, WSS_OP_TEXT);
    if (x == WSS_RESULT_OK) r->ok++;
    else if (x == WSS_RESULT_LIMIT) r->limit++;
    else if (x == WSS_RESULT_FREED) {
      r->freed++;
      break;
    } else r->other++;
  }
  return NULL;
}

static void scen_free_race(int unused) {
  (void) unused;
  int rounds = valgrind_mode ? 3 : 30, nthreads = 8;
  int bad_free = 0, not_freed = 0, others = 0, after = 0;
  for (int round = 0; round < rounds; round++) {
    wss_mgr *m = wss_mgr_new(NULL);
    if (!m) {
      CHECK(m != NULL);
      return;
    }
    atomic_int go = 0;
    racer_t rs[8];
    pthread_t th[8];
    int started = 0;
    for (int i = 0; i < nthreads; i++) {
      rs[i] = (racer_t){m, &go, 0, 0, 0, 0};
      if (pthread_create(&th[i], NULL, racer_main, &rs[i]) == 0) started++;
    }
    atomic_store(&go, 1);
    sleep_ms(round % 5); /* free at different points of the producers' work */
    if (wss_mgr_free(m) != WSS_RESULT_OK) bad_free++;
    for (int i = 0; i < started; i++) {
      pthread_join(th[i], NULL);
      not_freed += rs[i].freed != 1;
      others += rs[i].other != 0;
    }
    after += wss_mgr_wakeup(m, 0, NULL, 0) != WSS_RESULT_FREED;
    after += wss_send_threadsafe(m, 1, (const uint8_t *) "x", 1, 0) != WSS_RESULT_FREED;
    after += wss_mgr_free(m) != WSS_RESULT_FREED;
    after += wss_mgr_poll(m, 0, NULL) != WSS_RESULT_FREED;
  }
  CHECK(bad_free == 0);  /* each free returned OK */
  CHECK(not_freed == 0); /* each producer saw FREED */
  CHECK(others == 0);    /* and nothing but OK, LIMIT, FREED */
  CHECK(after == 0);
}

/* wss_mgr_free while another thread is inside wss_mgr_poll: refused, manager intact. */
typedef struct {
  wss_mgr *m;
  int ms;
  atomic_int entered;
  double t_out;
  wss_result r;
} poller_t;

static void *poller_main(void *arg) {
  poller_t *p = arg;
  atomic_store(&p->entered, 1);
  p->r = wss_mgr_poll(p->m, p->ms, NULL);
  p->t_out = now_ms();
  return NULL;
}

static void scen_free_in_poll(int unused) {
  (void) unused;
  wss_mgr *m = wss_mgr_new(NULL);
  CHECK(m != NULL);
  if (!m) return;
  poller_t p = {m, valgrind_mode ? 2000 : 500, 0, 0, WSS_RESULT_PANIC};
  pthread_t th;
  CHECK(pthread_create(&th, NULL, poller_main, &p) == 0);
  for (double t0 = now_ms(); !atomic_load(&p.entered) && now_ms() - t0 < bound(5000);) sched_yield();
  sleep_ms(valgrind_mode ? 400 : 100);
  double t_free = now_ms();
  EXPECT(wss_mgr_free(m), WSS_RESULT_CONCURRENT_USE);
  wss_id t = 0;
  EXPECT(wss_timer_add(m, 1, false, &t), WSS_RESULT_CONCURRENT_USE);
  pthread_join(th, NULL);
  CHECK(p.t_out > t_free); /* the free really raced with the poll */
  EXPECT(p.r, WSS_RESULT_OK);
  /* Still a working manager. */
  EXPECT(wss_timer_add(m, 1, false, &t), WSS_RESULT_OK);
  int fired = 0;
  wss_event ev;
  for (double t0 = now_ms(); !fired && now_ms() - t0 < bound(2000);) {
    wss_mgr_poll(m, 10, NULL);
    while (wss_mgr_next_event(m, &ev)) fired |= ev.kind == WSS_EV_TIMER && ev.conn == t;
  }
  CHECK(fired);
  EXPECT(wss_mgr_free(m), WSS_RESULT_OK);
  EXPECT(wss_mgr_free(m), WSS_RESULT_FREED);
}

/* ------------------------------------------------------------------------------------ */
/* Raw HTTP exchanges (a plain socket client against a server manager)                  */

/* Sends `req` on a new connection and polls until its request is waiting; returns the
 * connection id (0 on failure) and the socket in *fd. */
static wss_id raw_request(srv_t *s, const char *req, int *fd) {
  *fd = connect_local(s->port);
  if (*fd < 0) return 0;
  set_nonblock(*fd);
  srv_target_reset(s);
  s->capture = 1;
  if (send_all(*fd, req, strlen(req)) != 0) return 0;
  for (double t0 = now_ms(); !s->ready && now_ms() - t0 < bound(3000);) srv_poll(s, 1);
  return s->ready ? s->target : 0;
}

/* Polls and reads until a whole response is in `out` (a head alone for `head_only`,
 * 1xx, 204 and 304; else Content-Length or chunked), then 20 ms more for stray bytes.
 * Returns the response's length in `out`, 0 if incomplete. */
static size_t raw_response(srv_t *s, int fd, buf_t *out, int head_only) {
  size_t whole = 0;
  for (double t0 = now_ms(); !whole && now_ms() - t0 < bound(3000);) {
    srv_poll(s, 1);
    read_avail(fd, out);
    char *end = out->n ? strstr(out->p, "\r\n\r\n") : NULL;
    if (!end) continue;
    size_t head = (size_t) (end + 4 - out->p);
    int status = out->n > 12 ? atoi(out->p + 9) : 0;
    if (head_only || status < 200 || status == 204 || status == 304) {
      whole = head;
    } else if (strstr(out->p, "Transfer-Encoding: chunked\r\n") && strstr(out->p, "Transfer-Encoding: chunked\r\n") < end) {
      char *z = strstr(end, "\r\n0\r\n\r\n");
      if (z) whole = (size_t) (z + 7 - out->p);
    } else {
      char *cl = strstr(out->p, "Content-Length: ");
      size_t len = cl && cl < end ? (size_t) strtoul(cl + 16, NULL, 10) : 0;
      if (out->n >= head + len) whole = head + len;
    }
  }
  for (double t0 = now_ms(); whole && now_ms() - t0 < 20;) {
    srv_poll(s, 1);
    read_avail(fd, out);
  }
  return whole;
}

/* ------------------------------------------------------------------------------------ */
/* Files that are not regular files                                                     */

static void scen_files_http(int unused) {
  (void) unused;
  srv_t s;
  srv_init(&s);
  CHECK(srv_listen(&s, L_HTTP, 0, NULL) == WSS_RESULT_OK);
  wss_serve_opts o;
  memset(&o, 0, sizeof o);
  o.struct_size = sizeof o;
  o.root_dir = tmpdir;
  struct {
    const char *what, *target, *file; /* file: serve_file; NULL: serve_dir */
    int status;
  } cases[] = {
      {"serve_file FIFO", "/x", fifo, 404},
      {"serve_dir FIFO", "/fifo", NULL, 404},
      {"serve_file /dev/zero", "/x", "/dev/zero", 404},
      {"serve_file directory", "/x", tmpdir, 404},
      {"serve_dir regular file", "/ok.txt", NULL, 200},
      {"serve_file regular file", "/x", okfile, 200},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    snprintf(where, sizeof where, "%s", cases[i].what);
    char req[128];
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", cases[i].target);
    int fd;
    wss_id c = raw_request(&s, req, &fd);
    CHECK(c != 0);
    if (c) {
      double t0 = now_ms();
      wss_result r = cases[i].file ? wss_http_serve_file(s.m, c, cases[i].file, NULL) : wss_http_serve_dir(s.m, c, &o);
      double dt = now_ms() - t0;
      EXPECT(r, WSS_RESULT_OK);
      CHECK(dt < bound(1000)); /* promptly: never waits for a writer */
      buf_t out = {0};
      size_t n = raw_response(&s, fd, &out, 0);
      char want[32];
      snprintf(want, sizeof want, "HTTP/1.1 %d ", cases[i].status);
      CHECK(n > 0 && strncmp(out.p, want, strlen(want)) == 0);
      if (cases[i].status == 200) CHECK(n > 0 && strstr(out.p, "\r\n\r\nhello\n") != NULL);
      buf_free(&out);
    }
    if (fd >= 0) close(fd);
  }
  where[0] = 0;
  CHECK(wss_mgr_free(s.m) == WSS_RESULT_OK);
}

/* arg selects which TLS path is hostile: 0 cert FIFO, 1 key FIFO, 2 CA FIFO,
 * 3 /dev/zero, 4 directory. */
static void scen_files_tls(int arg) {
  if (!have_tls) {
    CHECK(!"no TLS certificate");
    return;
  }
  wss_mgr *m = wss_mgr_new(NULL);
  CHECK(m != NULL);
  if (!m) return;
  const char *bad = arg <= 2 ? fifo : arg == 3 ? "/dev/zero" : tmpdir;
  for (int i = 0; i < 2; i++) {
    wss_listen_opts lo;
    memset(&lo, 0, sizeof lo);
    lo.struct_size = sizeof lo;
    lo.tls_cert = certfile;
    lo.tls_key = keyfile;
    const char *what;
    wss_result r;
    wss_id id = 0;
    double t0 = now_ms();
    if (arg == 2 && i == 1) { /* a client's CA bundle */
      what = "wss_connect_opts.tls_ca";
      wss_connect_opts co;
      memset(&co, 0, sizeof co);
      co.struct_size = sizeof co;
      co.tls_ca = bad;
      r = wss_mgr_connect(m, "tls://127.0.0.1:9", &co, &id);
    } else {
      if (arg == 2) {
        what = "tls_client_ca";
        lo.tls_client_ca = bad;
      } else if ((arg == 0) || (arg >= 3 && i == 0)) {
        what = "tls_cert";
        lo.tls_cert = bad;
      } else {
        what = "tls_key";
        lo.tls_key = bad;
      }
      r = wss_mgr_listen(m, "https://127.0.0.1:0", &lo, &id);
    }
    double dt = now_ms() - t0;
    snprintf(where, sizeof where, "%s = %s", what, bad);
    EXPECT(r, WSS_RESULT_TLS_CONFIG);
    CHECK(dt < bound(2000));
    CHECK(strstr(wss_mgr_last_error(m), bad) != NULL); /* the message names the file */
    if (arg == 0 || arg == 1) break;
  }
  where[0] = 0;
  /* The manager still works with good files. */
  wss_listen_opts lo;
  memset(&lo, 0, sizeof lo);
  lo.struct_size = sizeof lo;
  lo.tls_cert = certfile;
  lo.tls_key = keyfile;
  wss_id id = 0;
  EXPECT(wss_mgr_listen(m, "https://127.0.0.1:0", &lo, &id), WSS_RESULT_OK);
  CHECK(wss_mgr_free(m) == WSS_RESULT_OK);
}

/* ------------------------------------------------------------------------------------ */
/* Forged ids                                                                           */

static void forged_calls(srv_t *s, wss_id f, int udp_port) {
  wss_mgr *m = s->m;
  char buf[128], addr[32];
  size_t n;
  uint16_t port;
  wss_str v, name;
  wss_http_request req;
  wss_tls_info info;
  wss_event ev;
  wss_serve_opts so;
  memset(&so, 0, sizeof so);
  so.struct_size = sizeof so;
  so.root_dir = tmpdir;
  snprintf(addr, sizeof addr, "127.0.0.1:%d", udp_port);
  const uint8_t *x = (const uint8_t *) "x";
  /* Reads first, then the calls that would change a live object. */
  EXPECT(wss_conn_buffered(m, f, &n), WSS_RESULT_NOT_FOUND);
  EXPECT(wss_conn_peer(m, f, buf, sizeof buf, &n), WSS_RESULT_NOT_FOUND);
  EXPECT(wss_conn_local(m, f, buf, sizeof buf, &n), WSS_RESULT_NOT_FOUND);
  EXPECT(wss_listener_port(m, f, &port), WSS_RESULT_NOT_FOUND);
  EXPECT(wss_conn_tls_info(m, f, &info), WSS_RESULT_NOT_FOUND);
  EXPECT(wss_http_request_get(m, f, &req), WSS_RESULT_NOT_FOUND);
  EXPECT(wss_http_header(m, f, "host", &v), WSS_RESULT_NOT_FOUND);
  EXPECT(wss_http_header_at(m, f, 0, &name, &v), WSS_RESULT_NOT_FOUND);
  CHECK(!wss_conn_next_event(m, f, &ev));
  EXPECT(wss_conn_send(m, f, x, 1), WSS_RESULT_NOT_FOUND);
  EXPECT(wss_udp_send_to(m, f, addr, x, 1), WSS_RESULT_NOT_FOUND);
  EXPECT(wss_ws_send(m, f, x, 1, WSS_OP_TEXT), WSS_RESULT_NOT_FOUND);
  EXPECT(wss_ws_send_fragment(m, f, x, 1, WSS_OP_TEXT, false), WSS_RESULT_NOT_FOUND);
  if (f != 0) { /* 0 means "every WebSocket connection" */
    size_t sent = 99;
    EXPECT(wss_ws_broadcast(m, f, x, 1, WSS_OP_TEXT, &sent), WSS_RESULT_NOT_FOUND);
  }
  EXPECT(wss_http_chunk(m, f, x, 1), WSS_RESULT_NOT_FOUND);
  EXPECT(wss_http_reply(m, f, 200, NULL, x, 1), WSS_RESULT_NOT_FOUND);
  EXPECT(wss_http_chunked_begin(m, f, 200, NULL), WSS_RESULT_NOT_FOUND);
  EXPECT(wss_http_serve_file(m, f, okfile, NULL), WSS_RESULT_NOT_FOUND);
  EXPECT(wss_http_serve_dir(m, f, &so), WSS_RESULT_NOT_FOUND);
  EXPECT(wss_ws_upgrade(m, f, NULL), WSS_RESULT_NOT_FOUND);
  EXPECT(wss_ws_close(m, f, 1000, NULL), WSS_RESULT_NOT_FOUND);
  EXPECT(wss_timer_cancel(m, f), WSS_RESULT_NOT_FOUND);
  EXPECT(wss_conn_close(m, f, true), WSS_RESULT_NOT_FOUND);
  EXPECT(wss_conn_close(m, f, false), WSS_RESULT_NOT_FOUND);
}

static void scen_ids(int unused) {
  (void) unused;
  srv_t s;
  srv_init(&s);
  CHECK(srv_listen(&s, L_HTTP, 0, NULL) == WSS_RESULT_OK);
  wss_id L = s.lid, U = 0, T = 0;
  CHECK(wss_mgr_listen(s.m, "udp://127.0.0.1:0", NULL, &U) == WSS_RESULT_OK);
  CHECK(wss_timer_add(s.m, 60000, false, &T) == WSS_RESULT_OK);
  uint16_t lport = s.port;
  int ufd = socket(AF_INET, SOCK_DGRAM, 0); /* where a forged udp_send_to would land */
  struct sockaddr_in ua;
  memset(&ua, 0, sizeof ua);
  ua.sin_family = AF_INET;
  ua.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t ul = sizeof ua;
  CHECK(ufd >= 0 && bind(ufd, (struct sockaddr *) &ua, sizeof ua) == 0 &&
        getsockname(ufd, (struct sockaddr *) &ua, &ul) == 0);
  int fd;
  wss_id C = raw_request(&s, "GET /real HTTP/1.1\r\nHost: x\r\n\r\n", &fd);
  CHECK(C != 0 && L != 0 && U != 0 && T != 0);
  if (!C || !L || !U || !T) goto out;
  s.capture = 0;

  wss_id reals[4] = {C, L, T, U};
  const char *names[4] = {"connection", "listener", "timer", "udp listener"};
  for (int i = 0; i < 4; i++) {
    for (int bit = 53; bit <= 63; bit++) {
      snprintf(where, sizeof where, "%s id %llu with bit %d set", names[i], (unsigned long long) reals[i], bit);
      forged_calls(&s, reals[i] | (1ull << bit), ntohs(ua.sin_port));
    }
    snprintf(where, sizeof where, "%s id with bits 53-63 set", names[i]);
    forged_calls(&s, reals[i] | 0xFFE0000000000000ull, ntohs(ua.sin_port));
  }
  snprintf(where, sizeof where, "UINT64_MAX");
  forged_calls(&s, UINT64_MAX, ntohs(ua.sin_port));
  snprintf(where, sizeof where, "id 0");
  forged_calls(&s, 0, ntohs(ua.sin_port));
  snprintf(where, sizeof where, "the real objects afterwards");
  for (int i = 0; i < 10; i++) srv_poll(&s, 1);
  /* The real objects are untouched. */
  uint16_t p2 = 0;
  EXPECT(wss_listener_port(s.m, L, &p2), WSS_RESULT_OK);
  CHECK(p2 == lport);
  char buf[64];
  size_t n;
  EXPECT(wss_conn_peer(s.m, C, buf, sizeof buf, &n), WSS_RESULT_OK);
  EXPECT(wss_conn_local(s.m, U, buf, sizeof buf, &n), WSS_RESULT_OK);
  wss_http_request req;
  EXPECT(wss_http_request_get(s.m, C, &req), WSS_RESULT_OK);
  CHECK(s.seen_kind[WSS_EV_CLOSE] == 0);
  EXPECT(wss_http_reply(s.m, C, 200, NULL, (const uint8_t *) "real", 4), WSS_RESULT_OK);
  buf_t out = {0};
  size_t whole = raw_response(&s, fd, &out, 0);
  CHECK(whole > 0 && whole == out.n && strncmp(out.p, "HTTP/1.1 200 OK\r\n", 17) == 0 &&
        strstr(out.p, "\r\n\r\nreal") != NULL && count_str(out.p, "HTTP/1.1") == 1);
  buf_free(&out);
  char dgram[8];
  CHECK(recv(ufd, dgram, sizeof dgram, MSG_DONTWAIT) < 0); /* no forged datagram went out */
  EXPECT(wss_timer_cancel(s.m, T), WSS_RESULT_OK);
  /* A new connection to the listener is accepted and answered. */
  int fd2;
  srv_target_reset(&s);
  fd2 = connect_local(lport);
  CHECK(fd2 >= 0);
  if (fd2 >= 0) {
    set_nonblock(fd2);
    const char *again = "GET /again HTTP/1.1\r\nHost: x\r\n\r\n";
    send_all(fd2, again, strlen(again));
    buf_t o2 = {0};
    CHECK(raw_response(&s, fd2, &o2, 0) > 0 && strstr(o2.p, "fresh:/again") != NULL);
    buf_free(&o2);
    close(fd2);
  }
  /* Closing the real listener: its CLOSE event carries its real id. */
  EXPECT(wss_conn_close(s.m, L, false), WSS_RESULT_OK);
  int closed_l = 0;
  wss_event ev;
  for (double t0 = now_ms(); !closed_l && now_ms() - t0 < bound(2000);) {
    wss_mgr_poll(s.m, 5, NULL);
    while (wss_mgr_next_event(s.m, &ev)) {
      if (ev.conn >> 53) s.high_ids++;
      if (ev.kind == WSS_EV_CLOSE && ev.conn == L) closed_l = 1;
    }
  }
  CHECK(closed_l);
  CHECK(s.high_ids == 0); /* no event ever named a forged id */
out:
  where[0] = 0;
  if (fd >= 0) close(fd);
  if (ufd >= 0) close(ufd);
  CHECK(wss_mgr_free(s.m) == WSS_RESULT_OK);
}

/* ------------------------------------------------------------------------------------ */
/* Far timers                                                                           */

static void scen_timers(int unused) {
  (void) unused;
  wss_mgr *m = wss_mgr_new(NULL);
  CHECK(m != NULL);
  if (!m) return;
  CHECK(wss_mgr_next_timeout_ms(m) == -1);
  const uint64_t far[] = {UINT64_MAX, 1ull << 63, (1ull << 63) - 1, 1ull << 62, 1ull << 53, 1ull << 40};
  wss_id ids[2 * 6];
  int n = 0;
  for (size_t i = 0; i < sizeof far / sizeof far[0]; i++) {
    for (int repeat = 0; repeat < 2; repeat++) {
      snprintf(where, sizeof where, "timer of %llu ms%s", (unsigned long long) far[i], repeat ? ", repeating" : "");
      wss_id id = 0;
      EXPECT(wss_timer_add(m, far[i], repeat, &id), WSS_RESULT_OK);
      ids[n++] = id;
      int64_t t = wss_mgr_next_timeout_ms(m);
      CHECK(t > 0);
      CHECK(t > 86400000LL); /* far: more than a day away, not "now" */
    }
  }
  where[0] = 0;
  wss_event ev;
  int fired = 0;
  for (int i = 0; i < 5; i++) {
    wss_mgr_poll(m, 1, NULL);
    while (wss_mgr_next_event(m, &ev)) fired += ev.kind == WSS_EV_TIMER;
  }
  CHECK(fired == 0);
  /* A near timer next to them: it comes first and fires; the far ones do not. */
  wss_id near = 0;
  CHECK(wss_timer_add(m, 30, false, &near) == WSS_RESULT_OK);
  int64_t t = wss_mgr_next_timeout_ms(m);
  CHECK(t >= 0 && t <= 30);
  int near_fired = 0;
  for (double t0 = now_ms(); !near_fired && now_ms() - t0 < bound(2000);) {
    wss_mgr_poll(m, 10, NULL);
    while (wss_mgr_next_event(m, &ev)) {
      near_fired |= ev.kind == WSS_EV_TIMER && ev.conn == near;
      fired += ev.kind == WSS_EV_TIMER && ev.conn != near;
    }
  }
  CHECK(near_fired && fired == 0);
  t = wss_mgr_next_timeout_ms(m);
  CHECK(t > 86400000LL);
  for (int i = 0; i < n; i++) EXPECT(wss_timer_cancel(m, ids[i]), WSS_RESULT_OK);
  CHECK(wss_mgr_free(m) == WSS_RESULT_OK);
}

/* ------------------------------------------------------------------------------------ */
/* Header lines from C                                                                  */

/* Blocks that are not well-formed header lines (no NUL: C strings). */
static const char *bad_blocks[] = {
    "X-A: 1\rX-Evil: 2\r\n",        /* a bare CR inside a value */
    "X-A: 1\r\n\rX-Evil: 2\r\n",    /* a bare CR starting a line */
    "X-A: 1\x01\r\n",               /* control characters */
    "X-A: 1\x1b[31m\r\n",
    "X-A: 1\x7f\r\n",
    "X-A: 1\x0b X-Evil: 2\r\n",
    "NoColon\r\n",                   /* a line without ':' */
    "X-A: 1\r\nX-Evil\r\n",
    "Bad Name: 1\r\n",               /* names that are not tokens */
    ": no name\r\n",
    "X-A: 1\r\n X-Evil: 2\r\n",     /* obsolete line folding */
    "X(A): 1\r\n",
    "X-A\x01: 1\r\n",
};
#define N_BAD (sizeof bad_blocks / sizeof bad_blocks[0])

/* The response in `out` is exactly one good one: status `status`, body `body`. */
static int one_clean_response(const buf_t *out, size_t whole, const char *status_line, const char *body) {
  return whole > 0 && whole == out->n && strncmp(out->p, status_line, strlen(status_line)) == 0 &&
         count_str(out->p, "HTTP/1.1 ") == 1 && strstr(out->p, "X-Evil") == NULL &&
         (!body || (out->n >= strlen(body) && strcmp(out->p + out->n - strlen(body), body) == 0));
}

static void scen_injection(int unused) {
  (void) unused;
  srv_t s;
  srv_init(&s);
  CHECK(srv_listen(&s, L_HTTP, 0, NULL) == WSS_RESULT_OK);
  for (size_t i = 0; i < N_BAD; i++) {
    const char *b = bad_blocks[i];
    /* wss_http_reply, wss_http_chunked_begin, wss_serve_opts.extra_headers. */
    snprintf(where, sizeof where, "bad header block #%zu", i);
    int fd;
    wss_id c = raw_request(&s, "GET /ok.txt HTTP/1.1\r\nHost: x\r\n\r\n", &fd);
    CHECK(c != 0);
    if (c) {
      wss_serve_opts so;
      memset(&so, 0, sizeof so);
      so.struct_size = sizeof so;
      so.root_dir = tmpdir;
      so.extra_headers = b;
      EXPECT(wss_http_reply(s.m, c, 200, b, (const uint8_t *) "x", 1), WSS_RESULT_INVALID_ARGUMENT);
      EXPECT(wss_http_chunked_begin(s.m, c, 200, b), WSS_RESULT_INVALID_ARGUMENT);
      EXPECT(wss_http_serve_dir(s.m, c, &so), WSS_RESULT_INVALID_ARGUMENT);
      EXPECT(wss_http_serve_file(s.m, c, okfile, &so), WSS_RESULT_INVALID_ARGUMENT);
      CHECK(wss_http_reply(s.m, c, 200, "X-Good: 1\r\n", (const uint8_t *) "good", 4) == WSS_RESULT_OK);
      buf_t out = {0};
      size_t whole = raw_response(&s, fd, &out, 0);
      CHECK(one_clean_response(&out, whole, "HTTP/1.1 200 OK\r\n", "\r\n\r\ngood"));
      CHECK(whole > 0 && strstr(out.p, "\r\nX-Good: 1\r\n") != NULL);
      buf_free(&out);
    }
    if (fd >= 0) close(fd);
    /* wss_upgrade_opts.extra_headers. */
    c = raw_request(&s,
                    "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                    &fd);
    CHECK(c != 0);
    if (c) {
      wss_upgrade_opts uo;
      memset(&uo, 0, sizeof uo);
      uo.struct_size = sizeof uo;
      uo.extra_headers = b;
      EXPECT(wss_ws_upgrade(s.m, c, &uo), WSS_RESULT_INVALID_ARGUMENT);
      uo.extra_headers = "X-Good: 1\r\n";
      EXPECT(wss_ws_upgrade(s.m, c, &uo), WSS_RESULT_OK);
      buf_t out = {0};
      size_t whole = raw_response(&s, fd, &out, 1);
      CHECK(one_clean_response(&out, whole, "HTTP/1.1 101 ", NULL));
      buf_free(&out);
    }
    if (fd >= 0) close(fd);
  }
  /* wss_connect_opts.ws_headers: refused by wss_mgr_connect, nothing reaches the wire. */
  uint16_t port = 0;
  int ls = listen_local(&port);
  CHECK(ls >= 0);
  wss_mgr *cm = wss_mgr_new(NULL);
  CHECK(cm != NULL);
  char url[64];
  snprintf(url, sizeof url, "ws://127.0.0.1:%u/x", (unsigned) port);
  for (size_t i = 0; cm && ls >= 0 && i < N_BAD; i++) {
    snprintf(where, sizeof where, "ws_headers block #%zu", i);
    wss_connect_opts co;
    memset(&co, 0, sizeof co);
    co.struct_size = sizeof co;
    co.ws_headers = bad_blocks[i];
    wss_id id = 0;
    EXPECT(wss_mgr_connect(cm, url, &co, &id), WSS_RESULT_INVALID_ARGUMENT);
  }
  where[0] = 0;
  if (cm && ls >= 0) {
    for (int i = 0; i < 10; i++) wss_mgr_poll(cm, 2, NULL);
    int fd = accept(ls, NULL, NULL);
    CHECK(fd < 0); /* no connection was even opened */
    if (fd >= 0) close(fd);
    /* The good block goes out (so the check above can see a connection). */
    wss_connect_opts co;
    memset(&co, 0, sizeof co);
    co.struct_size = sizeof co;
    co.ws_headers = "X-Good: 1\r\n";
    wss_id id = 0;
    EXPECT(wss_mgr_connect(cm, url, &co, &id), WSS_RESULT_OK);
    buf_t got = {0};
    fd = -1;
    for (double t0 = now_ms(); now_ms() - t0 < bound(3000) && !(got.n && strstr(got.p, "\r\n\r\n"));) {
      wss_mgr_poll(cm, 2, NULL);
      wss_event ev;
      while (wss_mgr_next_event(cm, &ev)) {
      }
      if (fd < 0) fd = accept(ls, NULL, NULL);
      if (fd >= 0) read_avail(fd, &got);
    }
    CHECK(got.n > 0 && strstr(got.p, "\r\nX-Good: 1\r\n") != NULL && strstr(got.p, "X-Evil") == NULL);
    buf_free(&got);
    if (fd >= 0) close(fd);
  }
  if (cm) CHECK(wss_mgr_free(cm) == WSS_RESULT_OK);
  if (ls >= 0) close(ls);
  CHECK(wss_mgr_free(s.m) == WSS_RESULT_OK);
}

/* Content-Length / Transfer-Encoding in extra headers: the library frames bodies. */
static void scen_framing(int unused) {
  (void) unused;
  srv_t s;
  srv_init(&s);
  CHECK(srv_listen(&s, L_HTTP, 0, NULL) == WSS_RESULT_OK);
  const char *get = "GET /f HTTP/1.1\r\nHost: x\r\n\r\n";
  const char *head = "HEAD /f HTTP/1.1\r\nHost: x\r\n\r\n";
  const uint8_t *abc = (const uint8_t *) "abc";
  struct {
    const char *what, *req, *headers;
    uint16_t status;
    size_t len; /* of "abc" */
    wss_result want;
  } replies[] = {
      {"matching Content-Length", "G", "Content-Length: 3\r\n", 200, 3, WSS_RESULT_OK},
      {"Content-Length above the body", "G", "Content-Length: 4\r\n", 200, 3, WSS_RESULT_INVALID_ARGUMENT},
      {"Content-Length below the body", "G", "Content-Length: 2\r\n", 200, 3, WSS_RESULT_INVALID_ARGUMENT},
      {"Content-Length without a body", "G", "Content-Length: 10\r\n", 200, 0, WSS_RESULT_INVALID_ARGUMENT},
      {"two differing Content-Length", "G", "Content-Length: 3\r\ncontent-length: 4\r\n", 200, 3,
       WSS_RESULT_INVALID_ARGUMENT},
      {"Content-Length list", "G", "Content-Length: 3, 3\r\n", 200, 3, WSS_RESULT_INVALID_ARGUMENT},
      {"signed Content-Length", "G", "Content-Length: +3\r\n", 200, 3, WSS_RESULT_INVALID_ARGUMENT},
      {"non-numeric Content-Length", "G", "Content-Length: abc\r\n", 200, 3, WSS_RESULT_INVALID_ARGUMENT},
      {"overflowing Content-Length", "G", "Content-Length: 99999999999999999999999\r\n", 200, 3,
       WSS_RESULT_INVALID_ARGUMENT},
      {"Transfer-Encoding chunked", "G", "Transfer-Encoding: chunked\r\n", 200, 3, WSS_RESULT_INVALID_ARGUMENT},
      {"Transfer-Encoding identity", "G", "transfer-encoding: identity\r\n", 200, 3, WSS_RESULT_INVALID_ARGUMENT},
      {"Content-Length in a 204", "G", "Content-Length: 0\r\n", 204, 0, WSS_RESULT_INVALID_ARGUMENT},
      {"Content-Length in a 1xx", "G", "Content-Length: 0\r\n", 103, 0, WSS_RESULT_INVALID_ARGUMENT},
      {"HEAD announcing a length", "H", "Content-Length: 1000\r\n", 200, 0, WSS_RESULT_OK},
      {"HEAD announcing another length", "H", "Content-Length: 5\r\n", 200, 3, WSS_RESULT_OK},
      {"304 announcing a length", "G", "Content-Length: 1000\r\n", 304, 0, WSS_RESULT_OK},
  };
  for (size_t i = 0; i < sizeof replies / sizeof replies[0]; i++) {
    snprintf(where, sizeof where, "wss_http_reply: %s", replies[i].what);
    int is_head = replies[i].req[0] == 'H';
    int fd;
    wss_id c = raw_request(&s, is_head ? head : get, &fd);
    CHECK(c != 0);
    if (c) {
      EXPECT(wss_http_reply(s.m, c, replies[i].status, replies[i].headers, abc, replies[i].len), replies[i].want);
      buf_t out = {0};
      size_t whole;
      if (replies[i].want == WSS_RESULT_OK) {
        whole = raw_response(&s, fd, &out, is_head);
        char sl[32];
        snprintf(sl, sizeof sl, "HTTP/1.1 %u ", replies[i].status);
        CHECK(one_clean_response(&out, whole, sl, NULL));
        CHECK(whole > 0 && count_str(out.p, "ontent-Length:") == 1); /* not announced twice */
        if (replies[i].status == 200 && !is_head) CHECK(whole > 0 && strstr(out.p, "\r\n\r\nabc") != NULL);
        if (replies[i].status != 200 || is_head) CHECK(whole > 0 && strstr(out.p, "\r\n\r\n")[4] == 0);
      } else {
        /* Nothing was sent: the proper answer is the only one. */
        CHECK(wss_http_reply(s.m, c, 200, NULL, (const uint8_t *) "fine", 4) == WSS_RESULT_OK);
        whole = raw_response(&s, fd, &out, 0);
        CHECK(one_clean_response(&out, whole, "HTTP/1.1 200 OK\r\n", "\r\n\r\nfine"));
      }
      buf_free(&out);
      /* The connection's framing is intact: the next request is answered. */
      srv_target_reset(&s); /* the default handler answers it */
      const char *next = "GET /next HTTP/1.1\r\nHost: x\r\n\r\n";
      send_all(fd, next, strlen(next));
      buf_t o2 = {0};
      whole = raw_response(&s, fd, &o2, 0);
      CHECK(one_clean_response(&o2, whole, "HTTP/1.1 200 OK\r\n", "fresh:/next"));
      buf_free(&o2);
    }
    if (fd >= 0) close(fd);
  }
  /* wss_http_chunked_begin: neither header at all. */
  const char *chunked_bad[] = {"Content-Length: 3\r\n", "Transfer-Encoding: chunked\r\n", "content-length: 0\r\n"};
  for (size_t i = 0; i < 3; i++) {
    snprintf(where, sizeof where, "wss_http_chunked_begin with %.*s", (int) strlen(chunked_bad[i]) - 2, chunked_bad[i]);
    int fd;
    wss_id c = raw_request(&s, get, &fd);
    CHECK(c != 0);
    if (c) {
      EXPECT(wss_http_chunked_begin(s.m, c, 200, chunked_bad[i]), WSS_RESULT_INVALID_ARGUMENT);
      EXPECT(wss_http_chunked_begin(s.m, c, 200, NULL), WSS_RESULT_OK);
      EXPECT(wss_http_chunk(s.m, c, abc, 3), WSS_RESULT_OK);
      EXPECT(wss_http_chunk(s.m, c, NULL, 0), WSS_RESULT_OK);
      buf_t out = {0};
      size_t whole = raw_response(&s, fd, &out, 0);
      CHECK(one_clean_response(&out, whole, "HTTP/1.1 200 OK\r\n", "\r\n3\r\nabc\r\n0\r\n\r\n"));
      buf_free(&out);
    }
    if (fd >= 0) close(fd);
  }
  /* wss_ws_upgrade: a 101 has no body. */
  const char *upgrade_bad[] = {"Content-Length: 0\r\n", "Transfer-Encoding: chunked\r\n"};
  for (size_t i = 0; i < 2; i++) {
    snprintf(where, sizeof where, "wss_ws_upgrade with %.*s", (int) strlen(upgrade_bad[i]) - 2, upgrade_bad[i]);
    int fd;
    wss_id c = raw_request(&s,
                           "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                           &fd);
    CHECK(c != 0);
    if (c) {
      wss_upgrade_opts uo;
      memset(&uo, 0, sizeof uo);
      uo.struct_size = sizeof uo;
      uo.extra_headers = upgrade_bad[i];
      EXPECT(wss_ws_upgrade(s.m, c, &uo), WSS_RESULT_INVALID_ARGUMENT);
      EXPECT(wss_ws_upgrade(s.m, c, NULL), WSS_RESULT_OK);
      buf_t out = {0};
      size_t whole = raw_response(&s, fd, &out, 1);
      CHECK(one_clean_response(&out, whole, "HTTP/1.1 101 ", NULL));
      CHECK(whole > 0 && strstr(out.p, "ontent-Length") == NULL && strstr(out.p, "ransfer-Encoding") == NULL);
      buf_free(&out);
    }
    if (fd >= 0) close(fd);
  }
  where[0] = 0;
  CHECK(wss_mgr_free(s.m) == WSS_RESULT_OK);
}

/* ------------------------------------------------------------------------------------ */
/* Contract gaps                                                                        */

/* Every event of an accepted connection carries its listener in `parent`. */
static void scen_parent(int unused) {
  (void) unused;
  if (!have_tls) {
    CHECK(!"no TLS certificate");
    return;
  }
  srv_t s;
  srv_init(&s);
  wss_listen_opts lo;
  memset(&lo, 0, sizeof lo);
  lo.struct_size = sizeof lo;
  lo.send_low_water = 4096;
  CHECK(srv_listen(&s, L_TCP, 0, &lo) == WSS_RESULT_OK);
  uint16_t tcp_port = s.port;
  /* tcp://: ACCEPT, READ, DRAIN, CLOSE. */
  int fd = connect_local(tcp_port);
  CHECK(fd >= 0);
  srv_target_reset(&s);
  s.capture = 1;
  send_all(fd, "hi", 2);
  for (double t0 = now_ms(); !s.ready && now_ms() - t0 < bound(3000);) srv_poll(&s, 1);
  wss_id c = s.target;
  CHECK(s.ready && c != 0);
  if (fd >= 0 && c) {
    set_nonblock(fd);
    for (int i = 0; i < 8; i++) EXPECT(wss_conn_send(s.m, c, big, sizeof big), WSS_RESULT_OK);
    size_t buffered = 0;
    CHECK(wss_conn_buffered(s.m, c, &buffered) == WSS_RESULT_OK && buffered > 4096);
    buf_t sink = {0};
    for (double t0 = now_ms(); s.seen_kind[WSS_EV_DRAIN] == 0 && now_ms() - t0 < bound(5000);) {
      srv_poll(&s, 1);
      read_avail(fd, &sink);
      sink.n = 0; /* keep reading, do not keep */
    }
    buf_free(&sink);
  }
  CHECK(s.seen_kind[WSS_EV_DRAIN] > 0);
  if (fd >= 0) close(fd);
  for (double t0 = now_ms(); !s.closed && now_ms() - t0 < bound(3000);) srv_poll(&s, 1);
  CHECK(s.closed);
  srv_target_reset(&s);
  /* tls://: ACCEPT, TLS_READY, READ, CLOSE. */
  CHECK(srv_listen(&s, L_TCP, 1, NULL) == WSS_RESULT_OK);
  char url[64];
  snprintf(url, sizeof url, "tls://127.0.0.1:%u", (unsigned) s.port);
  cli_t cl;
  CHECK(cli_open(&cl, url));
  CHECK(wss_conn_send(cl.m, cl.id, (const uint8_t *) "tls", 3) == WSS_RESULT_OK);
  for (double t0 = now_ms(); !(cl.rx.n >= 3) && now_ms() - t0 < bound(3000);) pump(&s, &cl, NULL, 1);
  CHECK(cl.rx.n == 3 && memcmp(cl.rx.p, "tls", 3) == 0); /* echoed */
  cli_close(&cl);
  /* http:// and ws://: HTTP_MSG, WS_OPEN, WS_MSG. */
  CHECK(srv_listen(&s, L_HTTP, 0, NULL) == WSS_RESULT_OK);
  fresh_check(&s);
  CHECK(srv_listen(&s, L_WS, 0, NULL) == WSS_RESULT_OK);
  fresh_check(&s);
  for (int i = 0; i < 20; i++) srv_poll(&s, 2); /* the closes */
  const struct {
    uint32_t kind;
    const char *name;
  } kinds[] = {{WSS_EV_READ, "READ"},       {WSS_EV_DRAIN, "DRAIN"},   {WSS_EV_TLS_READY, "TLS_READY"},
               {WSS_EV_HTTP_MSG, "HTTP_MSG"}, {WSS_EV_WS_OPEN, "WS_OPEN"}, {WSS_EV_WS_MSG, "WS_MSG"},
               {WSS_EV_CLOSE, "CLOSE"}};
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
    snprintf(where, sizeof where, "parent of %s events (%d seen, %d wrong)", kinds[i].name,
             s.seen_kind[kinds[i].kind], s.bad_parent_kind[kinds[i].kind]);
    CHECK(s.seen_kind[kinds[i].kind] > 0);
    CHECK(s.bad_parent_kind[kinds[i].kind] == 0);
  }
  where[0] = 0;
  CHECK(s.nacc >= 4 && s.accept_bad_parent == 0);
  CHECK(wss_mgr_free(s.m) == WSS_RESULT_OK);
}

/* Listeners have no peer; bracketless IPv6; huge URLs. */
static void scen_listeners_urls(int unused) {
  (void) unused;
  wss_mgr *m = wss_mgr_new(NULL);
  CHECK(m != NULL);
  if (!m) return;
  wss_id L = 0, U = 0, id = 0;
  char buf[64];
  size_t n = 0;
  CHECK(wss_mgr_listen(m, "tcp://127.0.0.1:0", NULL, &L) == WSS_RESULT_OK);
  CHECK(wss_mgr_listen(m, "udp://127.0.0.1:0", NULL, &U) == WSS_RESULT_OK);
  EXPECT(wss_conn_peer(m, L, buf, sizeof buf, &n), WSS_RESULT_INVALID_STATE);
  EXPECT(wss_conn_send(m, L, (const uint8_t *) "x", 1), WSS_RESULT_WRONG_KIND);
  EXPECT(wss_conn_peer(m, U, buf, sizeof buf, &n), WSS_RESULT_INVALID_STATE);
  EXPECT(wss_conn_send(m, U, (const uint8_t *) "x", 1), WSS_RESULT_INVALID_STATE);
  EXPECT(wss_conn_local(m, L, buf, sizeof buf, &n), WSS_RESULT_OK);
  CHECK(strncmp(buf, "127.0.0.1:", 10) == 0);
  /* After a datagram the udp listener has a peer to answer. */
  uint16_t uport = 0;
  CHECK(wss_listener_port(m, U, &uport) == WSS_RESULT_OK);
  int ufd = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(uport);
  CHECK(sendto(ufd, "ping", 4, 0, (struct sockaddr *) &a, sizeof a) == 4);
  struct sockaddr_in me;
  socklen_t ml = sizeof me;
  getsockname(ufd, (struct sockaddr *) &me, &ml);
  char me_s[32];
  snprintf(me_s, sizeof me_s, "127.0.0.1:%u", (unsigned) ntohs(me.sin_port));
  int got = 0;
  wss_event ev;
  for (double t0 = now_ms(); !got && now_ms() - t0 < bound(2000);) {
    wss_mgr_poll(m, 5, NULL);
    while (wss_mgr_next_event(m, &ev))
      if (ev.kind == WSS_EV_READ && ev.conn == U) got = str_is(ev.meta, me_s) && str_is(ev.data, "ping");
  }
  CHECK(got);
  EXPECT(wss_conn_peer(m, U, buf, sizeof buf, &n), WSS_RESULT_OK);
  CHECK(strcmp(buf, me_s) == 0);
  EXPECT(wss_conn_send(m, U, (const uint8_t *) "pong", 4), WSS_RESULT_OK);
  char rb[8] = {0};
  struct pollfd pf = {ufd, POLLIN, 0};
  CHECK(poll(&pf, 1, (int) bound(2000)) == 1 && recv(ufd, rb, sizeof rb, 0) == 4 && memcmp(rb, "pong", 4) == 0);
  close(ufd);

  /* IPv6 without brackets is not an address and a port. */
  EXPECT(wss_mgr_listen(m, "tcp://::1:0", NULL, &id), WSS_RESULT_BAD_URL);
  EXPECT(wss_mgr_listen(m, "http://::1:0", NULL, &id), WSS_RESULT_BAD_URL);
  EXPECT(wss_mgr_connect(m, "tcp://::1:9", NULL, &id), WSS_RESULT_BAD_URL);

  /* Huge URLs: refused, with a short message. */
  size_t huge = 1 << 20;
  char *url = malloc(huge + 64);
  CHECK(url != NULL);
  if (url) {
    for (int shape = 0; shape < 3; shape++) {
      if (shape == 0) {
        memset(url, 'x', huge);
        url[huge] = 0;
      } else if (shape == 1) {
        strcpy(url, "gopher://");
        memset(url + 9, 'x', huge);
        url[9 + huge] = 0;
      } else {
        strcpy(url, "tcp://127.0.0.1:");
        memset(url + 16, '9', huge);
        url[16 + huge] = 0;
      }
      snprintf(where, sizeof where, "1 MiB URL, shape %d", shape);
      EXPECT(wss_mgr_listen(m, url, NULL, &id), WSS_RESULT_BAD_URL);
      CHECK(strlen(wss_mgr_last_error(m)) < 300);
      EXPECT(wss_mgr_connect(m, url, NULL, &id), WSS_RESULT_BAD_URL);
      CHECK(strlen(wss_mgr_last_error(m)) < 300);
    }
    free(url);
  }
  where[0] = 0;
  CHECK(wss_mgr_free(m) == WSS_RESULT_OK);
}

/* ------------------------------------------------------------------------------------ */
/* The parent: fixtures, one child per scenario, totals                                 */

typedef struct {
  char name[48];
  void (*fn)(int);
  int arg;
  int limit_s;
} scen_t;

static scen_t scens[80];
static int nscens;

static void add(const char *name, void (*fn)(int), int arg, int limit_s) {
  scen_t *s = &scens[nscens++];
  snprintf(s->name, sizeof s->name, "%s", name);
  s->fn = fn;
  s->arg = arg;
  s->limit_s = limit_s;
}

static int total_passed, total_failed;

static void run_scenario(const scen_t *s, tally_t *t) {
  atomic_store(&t->passed, 0);
  atomic_store(&t->failed, 0);
  fflush(NULL);
  double t0 = now_ms();
  pid_t pid = fork();
  if (pid < 0) {
    fprintf(stderr, "scenario %s: fork failed\n", s->name);
    total_failed++;
    return;
  }
  if (pid == 0) {
    tally = t;
    scen = s->name;
    s->fn(s->arg);
    check_signals();
    fflush(NULL);
    _exit(0);
  }
  double limit = s->limit_s * 1000.0 * (valgrind_mode ? 8 : 1);
  int st = 0, abnormal = 0;
  for (;;) {
    pid_t w = waitpid(pid, &st, WNOHANG);
    if (w == pid) break;
    long rss = rss_of(pid);
    if (now_ms() - t0 > limit || rss > (2048L << 20)) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      if (rss > (2048L << 20))
        fprintf(stderr, "scenario %s: killed: resident memory over 2 GiB (%ld MiB)\n", s->name, rss >> 20);
      else
        fprintf(stderr, "scenario %s: timed out after %.0f s\n", s->name, limit / 1000);
      abnormal = 1;
      break;
    }
    sleep_ms(5);
  }
  if (!abnormal && WIFSIGNALED(st)) {
    fprintf(stderr, "scenario %s: killed by signal %d (%s)\n", s->name, WTERMSIG(st), strsignal(WTERMSIG(st)));
    abnormal = 1;
  } else if (!abnormal && WIFEXITED(st) && WEXITSTATUS(st) != 0) {
    fprintf(stderr, "scenario %s: exit status %d\n", s->name, WEXITSTATUS(st));
    abnormal = 1;
  }
  int p = atomic_load(&t->passed), f = atomic_load(&t->failed) + abnormal;
  total_passed += p;
  total_failed += f;
  printf("  %-28s %4d passed, %d failed (%.1f s)\n", s->name, p, f, (now_ms() - t0) / 1000);
}

static int write_file(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  size_t w = fwrite(p, 1, n, f);
  return fclose(f) == 0 && w == n ? 0 : -1;
}

int main(int argc, char **argv) {
  /* A parent (Python, cargo, a shell) may have left SIGPIPE ignored; exec keeps that.
   * Hosts run with the default: the process dies on SIGPIPE. */
  signal(SIGPIPE, SIG_DFL);
  snapshot_signals();
  const char *filters[32];
  int nfilters = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--valgrind") == 0) valgrind_mode = 1;
    else if (strcmp(argv[i], "-v") == 0) verbose = 1;
    else if (nfilters < 32) filters[nfilters++] = argv[i];
  }
  setvbuf(stdout, NULL, _IOLBF, 0);

  /* Fixtures: a temp dir with an 8 MiB file, a small file, a FIFO; a TLS certificate. */
  for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t) ('a' + i % 26);
  const char *base = getenv("TMPDIR");
  snprintf(tmpdir, sizeof tmpdir, "%s/wss-robustness-XXXXXX", base && *base ? base : "/tmp");
  CHECK(mkdtemp(tmpdir) != NULL);
  snprintf(bigfile, sizeof bigfile, "%s/big.bin", tmpdir);
  snprintf(okfile, sizeof okfile, "%s/ok.txt", tmpdir);
  snprintf(fifo, sizeof fifo, "%s/fifo", tmpdir);
  FILE *bf = fopen(bigfile, "wb");
  CHECK(bf != NULL);
  if (bf) {
    for (unsigned i = 0; i < BIGFILE_BYTES / sizeof big; i++) fwrite(big, 1, sizeof big, bf);
    CHECK(fclose(bf) == 0);
  }
  CHECK(write_file(okfile, "hello\n", 6) == 0);
  CHECK(mkfifo(fifo, 0600) == 0);
  const char *ec = getenv("WSS_TEST_TLS_CERT"), *ek = getenv("WSS_TEST_TLS_KEY");
  if (ec && ek && *ec && *ek) {
    snprintf(certfile, sizeof certfile, "%s", ec);
    snprintf(keyfile, sizeof keyfile, "%s", ek);
  } else {
    snprintf(certfile, sizeof certfile, "%s/cert.pem", tmpdir);
    snprintf(keyfile, sizeof keyfile, "%s/key.pem", tmpdir);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost "
             "-addext subjectAltName=IP:127.0.0.1 -days 2 -keyout '%s' -out '%s' >/dev/null 2>&1",
             keyfile, certfile);
    if (system(cmd) != 0) fprintf(stderr, "robustness_test: openssl could not make a certificate\n");
  }
  have_tls = access(certfile, R_OK) == 0 && access(keyfile, R_OK) == 0;
  CHECK(have_tls);

  for (int tls = 0; tls < 2; tls++)
    for (int k = 0; k < K_COUNT; k++) {
      char name[48];
      snprintf(name, sizeof name, "vanish/%s/%s", tls ? "tls" : "plain", kind_names[k]);
      add(name, scen_vanish, k + 100 * tls, 20);
    }
  const int ns[] = {1, 2, 4, 8, 16};
  for (int i = 0; i < 5; i++) {
    char name[48];
    snprintf(name, sizeof name, "threads/%d-producers", ns[i]);
    add(name, scen_hammer, ns[i], 20);
  }
  add("threads/limit", scen_limit, 0, 20);
  add("threads/free-racing-producers", scen_free_race, 0, 20);
  add("threads/free-during-poll", scen_free_in_poll, 0, 20);
  add("files/http-fifo-devzero-dir", scen_files_http, 0, 10);
  add("files/tls-cert-fifo", scen_files_tls, 0, 10);
  add("files/tls-key-fifo", scen_files_tls, 1, 10);
  add("files/tls-ca-fifo", scen_files_tls, 2, 10);
  add("files/tls-dev-zero", scen_files_tls, 3, 10);
  add("files/tls-directory", scen_files_tls, 4, 10);
  add("ids/forged-high-bits", scen_ids, 0, 20);
  add("timers/far", scen_timers, 0, 20);
  add("headers/injection", scen_injection, 0, 20);
  add("headers/framing", scen_framing, 0, 20);
  add("contract/parent", scen_parent, 0, 20);
  add("contract/listeners-urls", scen_listeners_urls, 0, 20);

  /* All children share one page of tallies; none exists before the first fork. */
  tally_t *shared = mmap(NULL, sizeof(tally_t) * (size_t) nscens, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  CHECK(shared != MAP_FAILED);
  double t0 = now_ms();
  for (int i = 0; shared != MAP_FAILED && i < nscens; i++) {
    int selected = nfilters == 0;
    for (int j = 0; j < nfilters; j++) selected |= strstr(scens[i].name, filters[j]) != NULL;
    if (selected) run_scenario(&scens[i], &shared[i]);
  }
  if (shared != MAP_FAILED) munmap(shared, sizeof(tally_t) * (size_t) nscens);

  /* This process never drove a manager; its dispositions are as set above. */
  check_signals();
  unlink(bigfile);
  unlink(okfile);
  unlink(fifo);
  if (!(ec && ek && *ec && *ek)) {
    unlink(certfile);
    unlink(keyfile);
  }
  CHECK(rmdir(tmpdir) == 0);
  total_passed += atomic_load(&parent_tally.passed);
  total_failed += atomic_load(&parent_tally.failed);
  printf("c robustness_test: %d passed, %d failed (%.1f s)\n", total_passed, total_failed, (now_ms() - t0) / 1000);
  return total_failed == 0 ? 0 : 1;
}
