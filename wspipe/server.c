/* The WebSocket side: the listener, handshakes, the library's events, and the way out.
 *
 * Everything here goes through include/wsserver.h, pulled: wss_mgr_poll does the
 * protocol work, run_manager drains the events it queued and turns each into what the
 * pipes need (a strict-mode notification, bytes for the output, a send). */
#include "wspipe.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

void broadcast(struct app *a, const uint8_t *p, size_t n, uint32_t op) {
  size_t sent = 0;
  wss_result r = wss_ws_broadcast(a->mgr, a->listener, p, n, op, &sent);
  if (r != WSS_RESULT_OK) logmsg("broadcast: %s: %s", wss_result_str(r), wss_mgr_last_error(a->mgr));
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

/* An HTTP request on the listener: the WebSocket handshake, upgraded by hand (not by a
 * ws:// listener) so that the access log sees the request line and its headers. The
 * headers the log needs are looked up before the answer: an answered request can no
 * longer be asked (WSS_RESULT_INVALID_STATE), while the views already taken stay valid
 * until the next drain (wsserver.h, wss_http_request). */
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
  if (a->access_log) access_log_line(a->access_log, ip, &req, status, bytes, referer, agent);
}

static void on_open(struct app *a, wss_id conn) {
  struct client *c = client_add(a, conn);
  if (!c) {
    wss_conn_close(a->mgr, conn, false);
    return;
  }
  peer_ip(a, conn, c->ip, sizeof c->ip);
  if (a->stopping) {
    wss_ws_close(a->mgr, conn, 1001, "server shutting down");
    return;
  }
  if (a->cfg.strict && !a->cfg.echo) {
    strict_notify(a, c->id, TYPE_OPEN, (const uint8_t *) c->ip, sizeof c->ip);
  }
}

static void on_message(struct app *a, const wss_event *ev) {
  struct client *c = client_by_conn(a, ev->conn);
  if (!c) return;
  uint32_t op = (ev->flags & WSS_FLAG_TEXT) ? WSS_OP_TEXT : WSS_OP_BINARY;
  if (a->cfg.echo) {
    wss_ws_send(a->mgr, ev->conn, ev->data.ptr, ev->data.len, op);
  } else if (a->cfg.strict) {
    strict_notify(a, c->id, op, ev->data.ptr, ev->data.len);
  } else {
    out_all(a, NULL, 0, ev->data.ptr, ev->data.len);
  }
}

static void on_close(struct app *a, wss_id conn) {
  struct client *c = client_by_conn(a, conn);
  if (!c) return;
  if (a->cfg.strict && !a->cfg.echo) strict_notify(a, c->id, TYPE_CLOSE, NULL, 0);
  client_remove(a, c);
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

/* After every wakeup of the poll loop: the manager's I/O, then every event it queued. */
void run_manager(struct app *a) {
  wss_event evs[64];
  wss_mgr_poll(a->mgr, 0, NULL);
  size_t n;
  /* The call that finds the queue empty also writes the sends gathered meanwhile. */
  while ((n = wss_mgr_next_events(a->mgr, evs, 64)) > 0) {
    for (size_t i = 0; i < n; i++) handle_event(a, &evs[i]);
  }
}

/* SIGINT/SIGTERM: no new clients, a close frame (1001) to each one; main's loop then
 * waits up to SHUTDOWN_MS for their answers. */
void begin_shutdown(struct app *a) {
  a->stopping = true;
  a->deadline = now_ms() + SHUTDOWN_MS;
  wss_conn_close(a->mgr, a->listener, false);
  size_t i = 0;
  for (struct client *c; (c = client_next(a, &i));) {
    wss_ws_close(a->mgr, c->conn, 1001, "server shutting down");
  }
  wss_mgr_flush(a->mgr);
}

/* An http(s):// listener rather than ws(s)://, so that handshakes come as requests
 * (on_request). The frame and message limits are both --max-frame-size: gwsocket
 * limits frames, and a fragmented message must not get around the limit. */
void start_listener(struct app *a) {
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
