/* The C API from C: listen, poll, reply, and misuse (NULL, stale ids, freed
 * managers), with only include/wsserver.h. Built with -Wall -Wextra -Werror
 * -Wpedantic and run under valgrind by scripts/test.sh. Prints
 * "c api_test: N passed, M failed". */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "wsserver.h"

static int passed, failed;

#define CHECK(expr)                                                   \
  do {                                                                \
    if (expr) {                                                       \
      passed++;                                                       \
    } else {                                                          \
      failed++;                                                       \
      fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #expr); \
    }                                                                 \
  } while (0)

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int connect_to(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *) &a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Polls the manager, answering requests, until `fd` has a whole response (bounded). */
static size_t serve_until_answered(wss_mgr *mgr, int fd, char *buf, size_t cap) {
  size_t got = 0;
  double t0 = now_ms();
  while (now_ms() - t0 < 5000) {
    wss_mgr_poll(mgr, 5, NULL);
    wss_event ev;
    while (wss_mgr_next_event(mgr, &ev)) {
      if (ev.kind == WSS_EV_HTTP_MSG) {
        wss_http_request req;
        CHECK(wss_http_request_get(mgr, ev.conn, &req) == WSS_RESULT_OK);
        CHECK(req.method.len == 4 && memcmp(req.method.ptr, "POST", 4) == 0);
        CHECK(req.body.len == 5 && memcmp(req.body.ptr, "hello", 5) == 0);
        CHECK(ev.data.len == 5 && memcmp(ev.data.ptr, "hello", 5) == 0);
        wss_str v;
        CHECK(wss_http_header(mgr, ev.conn, "x-name", &v) == WSS_RESULT_OK);
        CHECK(v.len == 3 && memcmp(v.ptr, "abc", 3) == 0);
        CHECK(wss_http_header(mgr, ev.conn, "missing", &v) == WSS_RESULT_NOT_FOUND);
        CHECK(wss_http_reply(mgr, ev.conn, 201, "X-Reply: yes\r\n", (const uint8_t *) "made", 4) ==
              WSS_RESULT_OK);
        CHECK(wss_http_reply(mgr, ev.conn, 200, NULL, NULL, 0) == WSS_RESULT_INVALID_STATE);
      }
    }
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 0) == 1) {
      ssize_t n = read(fd, buf + got, cap - 1 - got);
      if (n <= 0) break;
      got += (size_t) n;
      buf[got] = 0;
      if (strstr(buf, "\r\n\r\nmade")) return got;
    }
  }
  return got;
}

static void test_http_roundtrip(void) {
  wss_mgr *mgr = wss_mgr_new(NULL);
  CHECK(mgr != NULL);
  wss_listen_opts o;
  memset(&o, 0, sizeof o);
  o.struct_size = sizeof o;
  o.max_body_bytes = 1000;
  wss_id lid = 0;
  CHECK(wss_mgr_listen(mgr, "http://127.0.0.1:0", &o, &lid) == WSS_RESULT_OK);
  uint16_t port = 0;
  CHECK(wss_listener_port(mgr, lid, &port) == WSS_RESULT_OK && port != 0);
  CHECK(wss_mgr_fd(mgr) >= 0);

  int fd = connect_to(port);
  CHECK(fd >= 0);
  const char *req = "POST /x?y=1 HTTP/1.1\r\nHost: h\r\nX-Name: abc\r\nContent-Length: 5\r\n\r\nhello";
  CHECK(write(fd, req, strlen(req)) == (ssize_t) strlen(req));
  char buf[4096];
  size_t n = serve_until_answered(mgr, fd, buf, sizeof buf);
  CHECK(n > 0 && strncmp(buf, "HTTP/1.1 201 Created\r\n", 22) == 0);
  CHECK(strstr(buf, "X-Reply: yes\r\n") != NULL);
  CHECK(strstr(buf, "Content-Length: 4\r\n") != NULL);
  close(fd);
  wss_mgr_free(mgr);
}

static void test_misuse(void) {
  /* NULL managers and arguments. */
  CHECK(wss_mgr_poll(NULL, 0, NULL) == WSS_RESULT_NULL_PARAMETER);
  CHECK(wss_mgr_fd(NULL) == -1);
  CHECK(wss_conn_send(NULL, 1, (const uint8_t *) "x", 1) == WSS_RESULT_NULL_PARAMETER);
  wss_mgr_free(NULL);
  wss_event ev;
  CHECK(!wss_mgr_next_event(NULL, &ev));

  wss_mgr *mgr = wss_mgr_new(NULL);
  wss_id id = 0;
  CHECK(wss_mgr_listen(mgr, NULL, NULL, &id) == WSS_RESULT_NULL_PARAMETER);
  CHECK(wss_mgr_listen(mgr, "http://127.0.0.1:0", NULL, NULL) == WSS_RESULT_NULL_PARAMETER);
  CHECK(wss_mgr_listen(mgr, "gopher://x:1", NULL, &id) == WSS_RESULT_BAD_URL);
  CHECK(strlen(wss_mgr_last_error(mgr)) > 0);
  wss_listen_opts bad;
  memset(&bad, 0, sizeof bad);
  CHECK(wss_mgr_listen(mgr, "http://127.0.0.1:0", &bad, &id) == WSS_RESULT_INVALID_ARGUMENT);
  CHECK(strstr(wss_mgr_last_error(mgr), "struct_size") != NULL);
  CHECK(!wss_mgr_next_event(mgr, NULL));

  /* Unknown and stale ids. */
  CHECK(wss_conn_send(mgr, 424242, (const uint8_t *) "x", 1) == WSS_RESULT_NOT_FOUND);
  CHECK(wss_conn_close(mgr, 0, true) == WSS_RESULT_NOT_FOUND);
  CHECK(wss_http_reply(mgr, 7, 200, NULL, NULL, 0) == WSS_RESULT_NOT_FOUND);
  wss_id t = 0;
  CHECK(wss_timer_add(mgr, 1, false, &t) == WSS_RESULT_OK);
  CHECK(wss_conn_send(mgr, t, (const uint8_t *) "x", 1) == WSS_RESULT_NOT_FOUND);
  double t0 = now_ms();
  int fired = 0;
  while (!fired && now_ms() - t0 < 2000) {
    wss_mgr_poll(mgr, 10, NULL);
    while (wss_mgr_next_event(mgr, &ev)) fired |= ev.kind == WSS_EV_TIMER && ev.conn == t;
  }
  CHECK(fired);
  CHECK(wss_timer_cancel(mgr, t) == WSS_RESULT_NOT_FOUND);

  /* Freed: calls answer FREED, a second free does nothing. */
  wss_mgr_free(mgr);
  wss_mgr_free(mgr);
  CHECK(wss_mgr_poll(mgr, 0, NULL) == WSS_RESULT_FREED);
  CHECK(wss_mgr_wakeup(mgr, 0, NULL, 0) == WSS_RESULT_FREED);
  CHECK(strcmp(wss_mgr_last_error(mgr), "manager was freed") == 0);

  /* Static strings. */
  CHECK(strcmp(wss_result_str(WSS_RESULT_OK), "ok") == 0);
  CHECK(strcmp(wss_result_str(12345), "unknown result code") == 0);
  CHECK(strcmp(wss_version(), WSS_VERSION) == 0);
}

static void test_utilities(void) {
  char text[64];
  size_t n = 0;
  CHECK(wss_base64_encode((const uint8_t *) "hello", 5, false, text, sizeof text, &n) == WSS_RESULT_OK);
  CHECK(n == 8 && strcmp(text, "aGVsbG8=") == 0);
  CHECK(wss_base64_encode((const uint8_t *) "hello", 5, false, text, 4, &n) == WSS_RESULT_INSUFFICIENT_SIZE);
  CHECK(n == 8);
  uint8_t raw[16];
  CHECK(wss_base64_decode("aGVsbG8=", 8, false, raw, sizeof raw, &n) == WSS_RESULT_OK);
  CHECK(n == 5 && memcmp(raw, "hello", 5) == 0);
  CHECK(wss_base64_decode("***", 3, false, raw, sizeof raw, &n) == WSS_RESULT_INVALID_ARGUMENT);
  CHECK(wss_crc32(0, (const uint8_t *) "123456789", 9) == 0xCBF43926u);
  char hex[41];
  CHECK(wss_sha1_hex((const uint8_t *) "abc", 3, hex) == WSS_RESULT_OK);
  CHECK(strcmp(hex, "a9993e364706816aba3e25717850c26c9cd0d89d") == 0);
  CHECK(wss_md5_hex((const uint8_t *) "abc", 3, hex) == WSS_RESULT_OK);
  CHECK(strcmp(hex, "900150983cd24fb0d6963f7d28e17f72") == 0);
  uint8_t d[20];
  CHECK(wss_sha1(NULL, 0, d) == WSS_RESULT_OK);
  CHECK(wss_md5((const uint8_t *) "x", 1, NULL) == WSS_RESULT_NULL_PARAMETER);
  CHECK(wss_hex((const uint8_t *) "\x01\xff", 2, text, sizeof text, &n) == WSS_RESULT_OK && strcmp(text, "01ff") == 0);
}

int main(void) {
  test_http_roundtrip();
  test_misuse();
  test_utilities();
  printf("c api_test: %d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
