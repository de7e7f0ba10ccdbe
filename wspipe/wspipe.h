/* wspipe: a gwsocket-compatible WebSocket pipe server, written over the public C API.
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
 * have queued bytes. Nothing runs while nothing happens: no timers, no busy loop.
 *
 * The program, one concept per file (this header is the only one they share):
 *   main.c        start-up, the poll loop, shutdown and teardown; signals
 *   cli.c         the command line (gwsocket's options) into struct config
 *   input.c       the input FIFO and stdin: open, read, reopen at each writer's end;
 *                 standard mode's framing (one read, one text message)
 *   strict.c      strict mode's 12-byte header, both directions, with resynchronisation
 *   output.c      the output FIFO and stdout: non-blocking writes, bounded queue, drops
 *   server.c      the WebSocket side: listener, handshakes, events, broadcast, shutdown
 *   access_log.c  one Combined Log Format line per handshake
 *   clients.c     strict-mode client ids <-> connection ids (two hash tables)
 *   utf8.c        text must be UTF-8 on the wire: bad bytes become '?'
 *   util.c        logging to stderr, the monotonic clock, allocation that cannot fail
 *
 * Every .c file includes this header first: the feature-test macros below must come
 * before any system header. */
#ifndef WSPIPE_H
#define WSPIPE_H

#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE /* getopt_long */

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

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
/* The program's state: one struct app, owned by main.c, passed to everything. */

/* One open WebSocket and its strict-mode id (uint32, as in gwsocket's header). */
struct client {
  wss_id conn;
  uint32_t id;
  char ip[ADDR_PAD]; /* NUL-padded, as gwsocket's remote_ip */
};

/* An open-addressing table of clients keyed by strict-mode id or by connection id. */
struct table {
  struct client **slot;
  size_t mask; /* capacity - 1 (a power of two), or 0 before the first insert */
  size_t count;
  bool by_id;
};

/* The input FIFO, or stdin. */
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

/* The output FIFO, or stdout; output.c explains the buffering and drop policy. */
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

/* ------------------------------------------------------------------------- */
/* util.c */

void logmsg(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
int64_t now_ms(void);
void *xrealloc(void *p, size_t n);

static inline uint32_t get_be32(const uint8_t *p) {
  return ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16) | ((uint32_t) p[2] << 8) | p[3];
}

static inline void put_be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t) (v >> 24);
  p[1] = (uint8_t) (v >> 16);
  p[2] = (uint8_t) (v >> 8);
  p[3] = (uint8_t) v;
}

/* utf8.c */
size_t utf8_sanitize(uint8_t *p, size_t n, bool keep_tail);

/* cli.c */
void config_defaults(struct config *cfg);
void parse_args(int argc, char **argv, struct config *cfg);

/* clients.c */
struct client *client_add(struct app *a, wss_id conn);
struct client *client_by_conn(const struct app *a, wss_id conn);
struct client *client_by_id(const struct app *a, uint32_t id);
struct client *client_next(const struct app *a, size_t *i);
void client_remove(struct app *a, struct client *c);
void clients_free(struct app *a);

/* input.c */
bool ensure_fifo(const char *path);
void inputs_open(struct app *a);
void input_readable(struct app *a, struct input *in);
void inputs_close(struct app *a);

/* strict.c */
void strict_process(struct app *a, struct input *in);
void strict_ensure_cap(struct input *in, size_t need);
void strict_notify(struct app *a, uint32_t id, uint32_t type, const uint8_t *p, size_t n);

/* output.c */
void outputs_open(struct app *a);
void out_message(struct output *o, const uint8_t *hdr, size_t hlen, const uint8_t *p, size_t n);
void out_all(struct app *a, const uint8_t *hdr, size_t hlen, const uint8_t *p, size_t n);
void out_flush(struct output *o);
void outputs_close(struct app *a);

/* server.c */
void start_listener(struct app *a);
void broadcast(struct app *a, const uint8_t *p, size_t n, uint32_t op);
void run_manager(struct app *a);
void begin_shutdown(struct app *a);

/* access_log.c */
void access_log_line(FILE *f, const char *ip, const wss_http_request *req, int status,
                     size_t bytes, wss_str referer, wss_str agent);

#endif
