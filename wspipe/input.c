/* Inputs: the input FIFO, and stdin with --stdin (as gwsocket: stdin is read *as well
 * as* the FIFO, never instead of it).
 *
 * This file owns the descriptors: opening, reading in bounded rounds, and reopening the
 * FIFO at each writer's end. What the bytes mean belongs to the mode: standard mode's
 * framing is here (one read, one text message), strict mode's in strict.c. */
#include "wspipe.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Creates the FIFO when missing (mode 0666 less the umask, as gwsocket). */
bool ensure_fifo(const char *path) {
  struct stat st;
  if (stat(path, &st) == 0) {
    if (S_ISFIFO(st.st_mode)) return true;
    logmsg("%s exists and is not a FIFO", path);
    return false;
  }
  if (errno != ENOENT || (mkfifo(path, 0666) != 0 && errno != EEXIST)) {
    logmsg("cannot create the FIFO %s: %s", path, strerror(errno));
    return false;
  }
  return true;
}

/* Opens the input FIFO for reading.
 *
 * Why not keep a dummy writer open (gwsocket opens the FIFO O_RDWR)? Then the end of
 * a writer is never seen, and in strict mode the half message a dying writer left
 * would be glued to the next writer's first header. So the FIFO is opened
 * O_RDONLY|O_NONBLOCK and reopened at each end of file. This does not spin: on Linux a
 * FIFO opened while no writer is attached does not poll readable (no POLLHUP) until a
 * writer comes and writes or goes; poll(2) just sleeps. Where a system would report
 * the hang-up at once (end of file again and again with no data, right after the
 * reopen), wspipe falls back to holding a writer of its own on the FIFO, as gwsocket
 * does, and logs it. */
static bool input_open(struct input *in) {
  if (!ensure_fifo(in->path)) return false;
  in->fd = open(in->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (in->fd < 0) {
    logmsg("cannot open %s: %s", in->path, strerror(errno));
    return false;
  }
  in->got_data = false;
  in->opened_ms = now_ms();
  return true;
}

/* Standard mode: each read (up to PIPE_BUF bytes) is one text message. A write of up to
 * PIPE_BUF bytes is atomic on a pipe, so a writer's message arrives whole when we keep
 * up. A character cut by the end of the read waits for the next one, unless the writer
 * is gone (at_end). */
static void std_process(struct app *a, struct input *in, bool at_end) {
  size_t keep = utf8_sanitize(in->buf, in->len, !at_end);
  size_t n = in->len - keep;
  if (n > 0) broadcast(a, in->buf, n, WSS_OP_TEXT);
  memmove(in->buf, in->buf + n, keep);
  in->len = keep;
}

/* The writer closed (or the read failed): finish or drop what it left, then reopen the
 * FIFO for the next writer. The reopen also resets strict mode's state: see strict.c. */
static void input_eof(struct app *a, struct input *in) {
  if (!a->cfg.strict) {
    std_process(a, in, true);
  } else if (in->len > 0 || in->resync) {
    if (in->len > 0) {
      logmsg("%s: the writer closed in the middle of a message: %zu byte(s) dropped", in->label,
             in->len);
    }
    in->start = in->len = 0;
  }
  in->resync = false;
  if (!in->path) { /* stdin cannot be reopened: the FIFO goes on */
    in->fd = -1;
    return;
  }
  bool quick = !in->got_data && now_ms() - in->opened_ms < QUICK_EOF_MS;
  in->quick_eofs = quick ? in->quick_eofs + 1 : 0;
  close(in->fd);
  in->fd = -1;
  if (!input_open(in)) {
    logmsg("%s: giving up on %s", in->label, in->path);
    return;
  }
  if (in->quick_eofs >= QUICK_EOFS_BEFORE_FALLBACK && in->keep_fd < 0) {
    in->keep_fd = open(in->path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    logmsg("%s: end of file reported without a writer; holding the FIFO open from here on",
           in->label);
  }
}

/* POLLIN (or a hang-up) on an input. At most READS_PER_WAKE reads, so a writer that
 * never pauses cannot starve the network side of the loop. */
void input_readable(struct app *a, struct input *in) {
  for (int round = 0; round < READS_PER_WAKE && in->fd >= 0; round++) {
    size_t room;
    if (a->cfg.strict) {
      if (in->start > 0 || in->cap - in->len < STRICT_READ_CHUNK / 4) {
        strict_ensure_cap(in, in->len + STRICT_READ_CHUNK);
      }
      room = in->cap - in->start - in->len;
    } else {
      room = PIPE_BUF; /* buf holds PIPE_BUF + 4: a cut character and one read */
    }
    ssize_t n = read(in->fd, in->buf + in->start + in->len, room);
    if (n > 0) {
      in->got_data = true;
      in->quick_eofs = 0;
      in->len += (size_t) n;
      if (a->cfg.strict) {
        strict_process(a, in);
      } else {
        std_process(a, in, false);
      }
      if (!in->path) return; /* stdin may block: one read per wakeup */
      continue;
    }
    if (n == 0) {
      input_eof(a, in);
      return;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      logmsg("%s: read: %s", in->label, strerror(errno));
      input_eof(a, in);
    }
    return;
  }
}

/* The FIFO always (created when missing), stdin with --stdin. Standard mode reads into
 * a fixed buffer; strict mode's grows with the messages (strict_ensure_cap). */
void inputs_open(struct app *a) {
  const struct config *cfg = &a->cfg;
  struct input *in = &a->in[a->n_in++];
  in->label = "input pipe";
  in->path = cfg->pipein;
  in->keep_fd = -1;
  if (!input_open(in)) exit(1);
  if (cfg->use_stdin) {
    in = &a->in[a->n_in++];
    in->label = "stdin";
    in->fd = STDIN_FILENO;
    in->keep_fd = -1;
  }
  for (size_t i = 0; i < a->n_in; i++) {
    if (!cfg->strict) {
      a->in[i].cap = PIPE_BUF + 4;
      a->in[i].buf = xrealloc(NULL, a->in[i].cap);
    }
  }
}

void inputs_close(struct app *a) {
  for (size_t i = 0; i < a->n_in; i++) {
    if (a->in[i].path && a->in[i].fd >= 0) close(a->in[i].fd);
    if (a->in[i].keep_fd >= 0) close(a->in[i].keep_fd);
    free(a->in[i].buf);
  }
}
