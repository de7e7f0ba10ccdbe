/* ws_echo: a WebSocket echo server (any path), permessage-deflate offered.
 *
 *   build/examples/ws_echo PORT [--tls CERT KEY]
 *
 * Listens on 127.0.0.1:PORT (0 picks a free port; the port is printed): ws://, or
 * wss:// with --tls and PEM files. Every text and binary message comes back as it
 * came; pings are answered by the library. Any conformance runner (Autobahn) or load
 * generator can target it. */
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
  snprintf(url, sizeof url, "%s://127.0.0.1:%d", tls ? "wss" : "ws", atoi(argv[1]));

  wss_listen_opts opts;
  memset(&opts, 0, sizeof opts);
  opts.struct_size = sizeof opts;
  opts.ws_deflate = true;
  opts.max_frame_bytes = 64u << 20; /* conformance suites send 16 MiB frames */
  opts.max_message_bytes = 64u << 20;
  opts.max_send_buffer = 256u << 20;
  if (tls) {
    opts.tls_cert = argv[3];
    opts.tls_key = argv[4];
  }
  wss_mgr *mgr = wss_mgr_new(NULL);
  wss_id listener;
  wss_result r = mgr ? wss_mgr_listen(mgr, url, &opts, &listener) : WSS_RESULT_IO;
  if (r != WSS_RESULT_OK) {
    fprintf(stderr, "listen %s: %s: %s\n", url, wss_result_str(r), mgr ? wss_mgr_last_error(mgr) : "");
    wss_mgr_free(mgr);
    return 1;
  }
  uint16_t port = 0;
  wss_listener_port(mgr, listener, &port);
  printf("ws_echo listening on %s://127.0.0.1:%u\n", tls ? "wss" : "ws", (unsigned) port);
  fflush(stdout);

  wss_event evs[64];
  for (;;) {
    wss_mgr_poll(mgr, 1000, NULL);
    size_t n;
    while ((n = wss_mgr_next_events(mgr, evs, 64)) > 0) {
      for (size_t i = 0; i < n; i++) {
        const wss_event *ev = &evs[i];
        if (ev->kind == WSS_EV_WS_MSG) {
          uint32_t op = (ev->flags & WSS_FLAG_TEXT) ? WSS_OP_TEXT : WSS_OP_BINARY;
          wss_ws_send(mgr, ev->conn, ev->data.ptr, ev->data.len, op);
        }
      }
    }
  }
}
