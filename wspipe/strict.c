/* Strict mode (--strict): gwsocket's framing, in both directions.
 *
 * Every message is a 12-byte header of three big-endian uint32 (client id, type,
 * payload length) followed by the payload. From the application: type 0x01 (text) or
 * 0x02 (binary), client id 0 for every client or one id for one client. To the
 * application: 0x10 when a client opened (its IP address, NUL-padded to 46 bytes),
 * 0x01/0x02 for what it sent, 0x08 when it closed. docs/wspipe.md has the details. */
#include "wspipe.h"

#include <stdlib.h>
#include <string.h>

/* One whole message from the application: to every client (id 0) or to one. */
static void strict_dispatch(struct app *a, uint32_t id, uint32_t type, uint8_t *p, uint32_t n) {
  uint32_t op = type == TYPE_TEXT ? WSS_OP_TEXT : WSS_OP_BINARY;
  if (op == WSS_OP_TEXT) utf8_sanitize(p, n, false);
  if (id == 0) {
    broadcast(a, p, n, op);
    return;
  }
  struct client *c = client_by_id(a, id);
  if (!c) return; /* gone already: dropped silently, as gwsocket */
  wss_result r = wss_ws_send(a->mgr, c->conn, p, n, op);
  if (r != WSS_RESULT_OK && r != WSS_RESULT_CLOSED) {
    logmsg("send to client %u: %s", (unsigned) id, wss_result_str(r));
  }
}

/* Room for `need` pending bytes from buf[0]: what is pending moves to the front first,
 * so the buffer only grows for a message larger than any before. */
void strict_ensure_cap(struct input *in, size_t need) {
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

/* Takes every whole message out of the pending bytes.
 *
 * A header with a type other than 0x1/0x2, or a length over --max-frame-size, is
 * dropped with a logged error (its 12 bytes, as gwsocket), and then the input is
 * resynchronised: bytes are skipped one at a time until one starts a plausible header
 * (type 0x1 or 0x2, length within the limit, client id 0 or one that was handed out).
 * So a bad header followed by a good message loses nothing of the good one, even when
 * the bad header had a payload of its own behind it. The end of a writer also resets
 * the state (see input_eof in input.c). */
void strict_process(struct app *a, struct input *in) {
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

/* One message to the application: the header, then the payload (none for 0x08). */
void strict_notify(struct app *a, uint32_t id, uint32_t type, const uint8_t *p, size_t n) {
  uint8_t hdr[HDR_SIZE];
  put_be32(hdr, id);
  put_be32(hdr + 4, type);
  put_be32(hdr + 8, (uint32_t) n);
  out_all(a, hdr, sizeof hdr, p, n);
}
