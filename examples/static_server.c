/* static_server: serves a directory over HTTP.
 *
 *   build/examples/static_server PORT DIR
 *
 * Listens on 127.0.0.1:PORT (0 picks a free port; the port is printed). Types by
 * extension, index.html, ranges, ETag/Last-Modified; nothing outside DIR. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wsserver.h"

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s PORT DIR\n", argv[0]);
    return 2;
  }
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d", atoi(argv[1]));
  wss_mgr *mgr = wss_mgr_new(NULL);
  wss_id listener;
  if (mgr == NULL || wss_mgr_listen(mgr, url, NULL, &listener) != WSS_RESULT_OK) {
    fprintf(stderr, "listen %s: %s\n", url, mgr ? wss_mgr_last_error(mgr) : "no manager");
    wss_mgr_free(mgr);
    return 1;
  }
  uint16_t port = 0;
  wss_listener_port(mgr, listener, &port);
  printf("static_server serving %s on http://127.0.0.1:%u\n", argv[2], (unsigned) port);
  fflush(stdout);

  wss_serve_opts opts;
  memset(&opts, 0, sizeof opts);
  opts.struct_size = sizeof opts;
  opts.root_dir = argv[2];
  wss_event ev;
  for (;;) {
    wss_mgr_poll(mgr, 1000, NULL);
    while (wss_mgr_next_event(mgr, &ev)) {
      if (ev.kind == WSS_EV_HTTP_MSG) {
        wss_result r = wss_http_serve_dir(mgr, ev.conn, &opts);
        if (r != WSS_RESULT_OK) fprintf(stderr, "serve: %s\n", wss_mgr_last_error(mgr));
      }
    }
  }
}
