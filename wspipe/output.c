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
#include "wspipe.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

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
void out_message(struct output *o, const uint8_t *hdr, size_t hlen, const uint8_t *p, size_t n) {
  size_t total = hlen + n;
  struct iovec iov[2];
  int cnt = 0;
  if (hlen) iov[cnt++] = (struct iovec){.iov_base = (void *) hdr, .iov_len = hlen};
  if (n) iov[cnt++] = (struct iovec){.iov_base = (void *) p, .iov_len = n};
  if (cnt == 0 || o->dead) return;
  ssize_t w = -1;
  /* A second attempt only after EPIPE: a new reader may have the FIFO open already. */
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

/* Every output gets the message (the FIFO, and stdout with --stdout). */
void out_all(struct app *a, const uint8_t *hdr, size_t hlen, const uint8_t *p, size_t n) {
  for (size_t i = 0; i < a->n_out; i++) out_message(&a->out[i], hdr, hlen, p, n);
}

/* POLLOUT (or an error) on an output with queued bytes. */
void out_flush(struct output *o) {
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

/* The FIFO always (created now, opened when a message comes), stdout with --stdout.
 * The queue limit leaves room for two messages of the largest size a client may send,
 * so one slow read does not drop a maximal message. */
void outputs_open(struct app *a) {
  const struct config *cfg = &a->cfg;
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

/* At exit: the last bytes (close notifications) best effort, stdout's flags back as they
 * were (the file description is shared with whoever started us). */
void outputs_close(struct app *a) {
  for (size_t i = 0; i < a->n_out; i++) {
    out_flush(&a->out[i]);
    if (a->out[i].saved_flags >= 0) fcntl(STDOUT_FILENO, F_SETFL, a->out[i].saved_flags);
    if (a->out[i].path && a->out[i].fd >= 0) close(a->out[i].fd);
    free(a->out[i].q);
  }
}
