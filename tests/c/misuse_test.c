/* The misuse matrix from C: every function given NULL pointers, stale and unknown ids,
 * the wrong kind of connection, a freed manager, and a second thread inside a manager.
 * Each case must give its error code; none may crash. Run under valgrind by
 * scripts/test.sh. Prints "c misuse_test: N passed, M failed". */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "wsserver.h"

static int passed, failed;

#define EXPECT(call, want)                                                                      \
  do {                                                                                          \
    wss_result got_ = (call);                                                                   \
    if (got_ == (wss_result) (want)) {                                                          \
      passed++;                                                                                 \
    } else {                                                                                    \
      failed++;                                                                                 \
      fprintf(stderr, "%s:%d: %s gave %u (%s), want %s\n", __FILE__, __LINE__, #call,           \
              (unsigned) got_, wss_result_str(got_), #want);                                    \
    }                                                                                           \
  } while (0)

#define CHECK(expr)                                                                             \
  do {                                                                                          \
    if (expr) {                                                                                 \
      passed++;                                                                                 \
    } else {                                                                                    \
      failed++;                                                                                 \
      fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #expr);                  \
    }                                                                                           \
  } while (0)

static const uint8_t X[1] = {'x'};

static void null_pointers(wss_mgr *mgr, wss_id conn) {
  wss_id id;
  uint16_t port;
  size_t n;
  wss_event ev;
  wss_str s;
  wss_http_request req;
  wss_tls_info info;
  char buf[64];
  /* A NULL manager everywhere a manager is taken. */
  EXPECT(wss_mgr_poll(NULL, 0, NULL), WSS_RESULT_NULL_PARAMETER);
  EXPECT(wss_mgr_listen(NULL, "tcp://127.0.0.1:0", NULL, &id), WSS_RESULT_NULL_PARAMETER);
  EXPECT(wss_mgr_connect(NULL, "tcp://127.0.0.1:1", NULL, &id), WSS_RESULT_NULL_PARAMETER);
  EXPECT(wss_mgr_wakeup(NULL, 0, NULL, 0), WSS_RESULT_NULL_PARAMETER);
  EXPECT(wss_send_threadsafe(NULL, conn, X, 1, 0), WSS_RESULT_NULL_PARAMETER);
  EXPECT(wss_conn_send(NULL, conn, X, 1), WSS_RESULT_NULL_PARAMETER);
  EXPECT(wss_conn_close(NULL, conn, true), WSS_RESULT_NULL_PARAMETER);
  EXPECT(wss_conn_buffered(NULL, conn, &n), WSS_RESULT_NULL_PARAMETER);
  EXPECT(wss_conn_peer(NULL, conn, buf, sizeof buf, &n), WSS_RESULT_NULL_PARAMETER);
  EXPECT(wss_listener_port(NULL, conn, &port), WSS_RESULT_NULL_PARAMETER);
  EXPECT(wss_timer_add(NULL, 1, false, &id), WSS_RESULT_NULL_PARAMETER);
  EXPECT(wss_timer_cancel(NULL, 1), WSS_RESULT_NULL_PARAMETER);
  EXPECT(wss_http_reply(NULL, conn, 200, NULL, NULL, 0), WSS_RESULT_NULL_PARAMETER);
  EXPECT(wss_ws_send(NULL, conn, X, 1, WSS_OP_TEXT), WSS_RESULT_NULL_PARAMETER);
  EXPECT(wss_ws_close(NULL, conn, 1000, NULL), WSS_RESULT_NULL_PARAMETER);
  EXPECT(wss_ws_broadcast(NULL, 0, X, 1, WSS_OP_TEXT, &n), WSS_RESULT_NULL_PARAMETER);
  CHECK(!wss_mgr_next_event(NULL, &ev));
  CHECK(wss_mgr_next_events(NULL, &ev, 1) == 0);
  CHECK(!wss_conn_next_event(NULL, conn, &ev));
  CHECK(wss_mgr_fd(NULL) == -1);
  CHECK(wss_mgr_next_timeout_ms(NULL) == -1);
  CHECK(strlen(wss_mgr_last_error(NULL)) > 0);
  /* NULL out-parameters and inputs. */
  EXPECT(wss_mgr_listen(mgr, NULL, NULL, &id), WSS_RESULT_NULL_PARAMETER);
  EXPECT(wss_mgr_listen(mgr, "tcp://127.0.0.1:0", NULL, NULL), WSS_RESULT_NULL_PARAMETER);
  EXPECT(wss_mgr_connect(mgr, NULL, NULL, &id), WSS_RESULT_NULL_PARAMETER);
  EXPECT(wss_conn_send(mgr, conn, NULL, 1), WSS_RESULT_NULL_PARAMETER);
  EXPECT(wss_conn_buffered(mgr, conn, NULL), WSS_RESULT_NULL_PARAMETER);
  EXPECT(wss_conn_peer(mgr, conn, buf, sizeof buf, NULL), WSS_RESULT_NULL_PARAMETER);
  EXPECT(wss_listener_port(mgr, conn, NULL), WSS_RESULT_NULL_PARAMETER);
  EXPECT(wss_udp_send_to(mgr, conn, NULL, X, 1), WSS_RESULT_NULL_PARAMETER);
  EXPECT(wss_timer_add(mgr, 1, false, NULL), WSS_RESULT_NULL_PARAMETER);
  EXPECT(wss_http_request_get(mgr, conn, NULL), WSS_RESULT_NULL_PARAMETER);
  EXPECT(wss_http_header(mgr, conn, NULL, &s), WSS_RESULT_NULL_PARAMETER);
  EXPECT(wss_http_header(mgr, conn, "host", NULL), WSS_RESULT_NULL_PARAMETER);
  EXPECT(wss_http_header_at(mgr, conn, 0, NULL, &s), WSS_RESULT_NULL_PARAMETER);
  EXPECT(wss_http_reply(mgr, conn, 200, NULL, NULL, 3), WSS_RESULT_NULL_PARAMETER);
  EXPECT(wss_http_chunk(mgr, conn, NULL, 3), WSS_RESULT_NULL_PARAMETER);
  EXPECT(wss_http_serve_dir(mgr, conn, NULL), WSS_RESULT_NULL_PARAMETER);
  EXPECT(wss_http_serve_file(mgr, conn, NULL, NULL), WSS_RESULT_NULL_PARAMETER);
  EXPECT(wss_conn_tls_info(mgr, conn, NULL), WSS_RESULT_NULL_PARAMETER);
  EXPECT(wss_ws_send(mgr, conn, NULL, 2, WSS_OP_TEXT), WSS_RESULT_NULL_PARAMETER);
  EXPECT(wss_ws_send_fragment(mgr, conn, NULL, 2, WSS_OP_TEXT, false), WSS_RESULT_NULL_PARAMETER);
  EXPECT(wss_ws_broadcast(mgr, 0, NULL, 2, WSS_OP_TEXT, &n), WSS_RESULT_NULL_PARAMETER);
  EXPECT(wss_base64_encode(X, 1, false, buf, sizeof buf, NULL), WSS_RESULT_NULL_PARAMETER);
  EXPECT(wss_base64_decode(NULL, 4, false, (uint8_t *) buf, sizeof buf, &n), WSS_RESULT_NULL_PARAMETER);
  EXPECT(wss_hex(NULL, 3, buf, sizeof buf, &n), WSS_RESULT_NULL_PARAMETER);
  EXPECT(wss_md5(X, 1, NULL), WSS_RESULT_NULL_PARAMETER);
  EXPECT(wss_sha1(NULL, 5, (uint8_t *) buf), WSS_RESULT_NULL_PARAMETER);
  CHECK(wss_crc32(7, NULL, 5) == 7);
  CHECK(!wss_mgr_next_event(mgr, NULL));
  CHECK(wss_mgr_next_events(mgr, NULL, 4) == 0);
  (void) req;
  (void) info;
}

static void stale_and_unknown_ids(wss_mgr *mgr) {
  const wss_id ids[] = {0, 1, 12345, ((wss_id) 1 << 52) | 3, UINT64_MAX};
  for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
    wss_id id = ids[i];
    size_t n;
    uint16_t port;
    wss_http_request req;
    EXPECT(wss_conn_send(mgr, id, X, 1), WSS_RESULT_NOT_FOUND);
    EXPECT(wss_conn_close(mgr, id, false), WSS_RESULT_NOT_FOUND);
    EXPECT(wss_conn_buffered(mgr, id, &n), WSS_RESULT_NOT_FOUND);
    EXPECT(wss_listener_port(mgr, id, &port), WSS_RESULT_NOT_FOUND);
    EXPECT(wss_http_request_get(mgr, id, &req), WSS_RESULT_NOT_FOUND);
    EXPECT(wss_http_reply(mgr, id, 200, NULL, NULL, 0), WSS_RESULT_NOT_FOUND);
    EXPECT(wss_ws_send(mgr, id, X, 1, WSS_OP_BINARY), WSS_RESULT_NOT_FOUND);
    EXPECT(wss_ws_close(mgr, id, 1000, NULL), WSS_RESULT_NOT_FOUND);
    EXPECT(wss_timer_cancel(mgr, id), WSS_RESULT_NOT_FOUND);
  }
}

static void wrong_kinds(wss_mgr *mgr) {
  wss_id http, tcp, timer;
  size_t n;
  EXPECT(wss_mgr_listen(mgr, "http://127.0.0.1:0", NULL, &http), WSS_RESULT_OK);
  EXPECT(wss_mgr_listen(mgr, "tcp://127.0.0.1:0", NULL, &tcp), WSS_RESULT_OK);
  EXPECT(wss_timer_add(mgr, 100000, false, &timer), WSS_RESULT_OK);
  /* Listeners are not connections; timers are neither. */
  EXPECT(wss_ws_send(mgr, http, X, 1, WSS_OP_TEXT), WSS_RESULT_WRONG_KIND);
  EXPECT(wss_http_reply(mgr, tcp, 200, NULL, NULL, 0), WSS_RESULT_WRONG_KIND);
  EXPECT(wss_conn_send(mgr, tcp, X, 1), WSS_RESULT_WRONG_KIND);
  EXPECT(wss_conn_buffered(mgr, http, &n), WSS_RESULT_WRONG_KIND);
  EXPECT(wss_conn_send(mgr, timer, X, 1), WSS_RESULT_NOT_FOUND);
  EXPECT(wss_ws_broadcast(mgr, timer, X, 1, WSS_OP_TEXT, &n), WSS_RESULT_NOT_FOUND);
  /* Bad opcodes, codes and options. */
  EXPECT(wss_ws_broadcast(mgr, http, X, 1, 7, &n), WSS_RESULT_INVALID_ARGUMENT);
  EXPECT(wss_ws_broadcast(mgr, http, (const uint8_t *) "\xff", 1, WSS_OP_TEXT, &n), WSS_RESULT_INVALID_ARGUMENT);
  EXPECT(wss_send_threadsafe(mgr, tcp, X, 1, 9), WSS_RESULT_INVALID_ARGUMENT);
  wss_listen_opts o;
  memset(&o, 0, sizeof o);
  wss_id id;
  EXPECT(wss_mgr_listen(mgr, "ws://127.0.0.1:0", &o, &id), WSS_RESULT_INVALID_ARGUMENT);
  o.struct_size = sizeof o;
  EXPECT(wss_mgr_listen(mgr, "wss://127.0.0.1:0", &o, &id), WSS_RESULT_INVALID_ARGUMENT);
  o.tls_cert = "/nonexistent.pem";
  o.tls_key = "/nonexistent.key";
  EXPECT(wss_mgr_listen(mgr, "wss://127.0.0.1:0", &o, &id), WSS_RESULT_TLS_CONFIG);
  CHECK(strstr(wss_mgr_last_error(mgr), "/nonexistent.pem") != NULL);
  EXPECT(wss_mgr_listen(mgr, "http://127.0.0.1:99999", NULL, &id), WSS_RESULT_BAD_URL);
  EXPECT(wss_timer_cancel(mgr, timer), WSS_RESULT_OK);
}

struct poller {
  wss_mgr *mgr;
  wss_result result;
};

static void *poll_long(void *arg) {
  struct poller *p = arg;
  p->result = wss_mgr_poll(p->mgr, 3000, NULL);
  return NULL;
}

static void second_thread(void) {
  wss_mgr *mgr = wss_mgr_new(NULL);
  struct poller p = {mgr, WSS_RESULT_PANIC};
  pthread_t t;
  pthread_create(&t, NULL, poll_long, &p);
  struct timespec ts = {0, 200 * 1000 * 1000};
  nanosleep(&ts, NULL);
  /* Not thread-safe while the other thread polls: detected and refused. */
  wss_id id;
  EXPECT(wss_timer_add(mgr, 5, false, &id), WSS_RESULT_CONCURRENT_USE);
  EXPECT(wss_mgr_listen(mgr, "tcp://127.0.0.1:0", NULL, &id), WSS_RESULT_CONCURRENT_USE);
  CHECK(wss_mgr_fd(mgr) == -1);
  /* The thread-safe calls work and end the other thread's wait. */
  EXPECT(wss_mgr_wakeup(mgr, 0, (const uint8_t *) "hi", 2), WSS_RESULT_OK);
  pthread_join(t, NULL);
  EXPECT(p.result, WSS_RESULT_OK);
  wss_event ev;
  int woke = 0;
  while (wss_mgr_next_event(mgr, &ev)) woke |= ev.kind == WSS_EV_WAKEUP && ev.data.len == 2;
  CHECK(woke);
  wss_mgr_free(mgr);
}

static void freed_manager(void) {
  wss_mgr *mgr = wss_mgr_new(NULL);
  wss_id id;
  EXPECT(wss_mgr_listen(mgr, "tcp://127.0.0.1:0", NULL, &id), WSS_RESULT_OK);
  wss_mgr_free(mgr);
  wss_mgr_free(mgr); /* double free: harmless */
  size_t n;
  wss_event ev;
  EXPECT(wss_mgr_poll(mgr, 0, NULL), WSS_RESULT_FREED);
  EXPECT(wss_conn_send(mgr, id, X, 1), WSS_RESULT_FREED);
  EXPECT(wss_ws_broadcast(mgr, 0, X, 1, WSS_OP_TEXT, &n), WSS_RESULT_FREED);
  EXPECT(wss_mgr_wakeup(mgr, 0, NULL, 0), WSS_RESULT_FREED);
  EXPECT(wss_send_threadsafe(mgr, id, X, 1, 0), WSS_RESULT_FREED);
  CHECK(!wss_mgr_next_event(mgr, &ev));
  CHECK(wss_mgr_fd(mgr) == -1);
  CHECK(strcmp(wss_mgr_last_error(mgr), "manager was freed") == 0);
}

int main(void) {
  wss_mgr *mgr = wss_mgr_new(NULL);
  wss_id conn = 42;
  null_pointers(mgr, conn);
  stale_and_unknown_ids(mgr);
  wrong_kinds(mgr);
  wss_mgr_free(mgr);
  second_thread();
  freed_manager();
  printf("c misuse_test: %d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
