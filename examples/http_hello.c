/* http_hello: answers every HTTP request with 200 and a short body.
 *
 *   build/examples/http_hello PORT [--tls CERT KEY]
 *
 * Listens on 127.0.0.1:PORT (0 picks a free port; the port is printed): http://, or
 * https:// with --tls and PEM files (paths). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wsserver.h"

int main(int argc, char **argv) {
  if (argc != 2 && !(argc == 5 && strcmp(argv[2], "--tls") == 0)) {
    fprintf(stderr, "usage: %s PORT [--tls CERT KEY]\n", argv[0]);
    return 2;
  }
  int tls = argc == 5;
  char url[64];
  snprintf(url, sizeof url, "%s://127.0.0.1:%d", tls ? "https" : "http", atoi(argv[1]));
  wss_listen_opts opts;
  memset(&opts, 0, sizeof opts);
  opts.struct_size = sizeof opts;
  if (tls) {
    opts.tls_cert = argv[3];
    opts.tls_key = argv[4];
  }

  wss_mgr *mgr = wss_mgr_new(NULL);
  if (mgr == NULL) {
    fprintf(stderr, "wss_mgr_new failed\n");
    return 1;
  }
  wss_id listener;
  wss_result r = wss_mgr_listen(mgr, url, &opts, &listener);
  if (r != WSS_RESULT_OK) {
    fprintf(stderr, "listen %s: %s: %s\n", url, wss_result_str(r), wss_mgr_last_error(mgr));
    wss_mgr_free(mgr);
    return 1;
  }
  uint16_t port = 0;
  wss_listener_port(mgr, listener, &port);
  printf("http_hello listening on %s://127.0.0.1:%u\n", tls ? "https" : "http", (unsigned) port);
  fflush(stdout);

  static const char body[] = "Hello, world!\n";
  wss_event evs[64];
  for (;;) {
    wss_mgr_poll(mgr, 1000, NULL);
    size_t n;
    while ((n = wss_mgr_next_events(mgr, evs, 64)) > 0) {
      for (size_t i = 0; i < n; i++) {
        if (evs[i].kind == WSS_EV_HTTP_MSG) {
          wss_http_reply(mgr, evs[i].conn, 200, "Content-Type: text/plain\r\n", (const uint8_t *) body,
                         sizeof body - 1);
        }
      }
    }
  }
}
