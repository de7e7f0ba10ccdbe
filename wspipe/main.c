/* wspipe's main: start-up, the one poll(2) loop, shutdown and teardown.
 *
 *   build/wspipe [PORT] [-p PORT] [--addr=ADDR] [--pipein=FIFO] [--pipeout=FIFO]
 *                [--std | --stdin | --stdout] [--strict] [--echo-mode]
 *                [--max-frame-size=BYTES] [--origin=ORIGIN]
 *                [--access-log=FILE] [--ssl-cert=CERT --ssl-key=KEY]
 *
 * wspipe.h describes the program and its files; docs/wspipe.md is the manual. */
#include "wspipe.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* SIGINT/SIGTERM arrive as a byte on this pipe, so the poll loop sees them as one more
 * readable descriptor and the handler does nothing that is not async-signal-safe. */
static int sig_pipe[2] = {-1, -1};

static void on_signal(int sig) {
  int saved = errno;
  unsigned char b = (unsigned char) sig;
  if (write(sig_pipe[1], &b, 1) < 0) { /* full: a wakeup is pending anyway */
  }
  errno = saved;
}

static void setup_signals(void) {
  if (pipe(sig_pipe) != 0) {
    logmsg("pipe: %s", strerror(errno));
    exit(1);
  }
  for (int i = 0; i < 2; i++) {
    fcntl(sig_pipe[i], F_SETFL, fcntl(sig_pipe[i], F_GETFL) | O_NONBLOCK);
    fcntl(sig_pipe[i], F_SETFD, FD_CLOEXEC);
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sa.sa_handler = SIG_IGN; /* a reader that goes away is EPIPE, not death */
  sigaction(SIGPIPE, &sa, NULL);
}

/* Runs until a signal has stopped the server and its clients are gone (or the shutdown
 * wait is over). Returns false on a poll(2) failure. */
static bool poll_loop(struct app *a) {
  for (;;) {
    int64_t now = now_ms();
    if (a->stopping && (a->by_conn.count == 0 || now >= a->deadline)) return true;

    /* The signal pipe, the manager, the inputs (not while stopping) and the outputs
     * that have bytes queued: an output with nothing to write is not watched, so an
     * idle wspipe sleeps. */
    struct pollfd pfd[2 + 2 + 2];
    int in_at[2] = {-1, -1}, out_at[2] = {-1, -1};
    nfds_t n = 0;
    pfd[n++] = (struct pollfd){.fd = sig_pipe[0], .events = POLLIN};
    pfd[n++] = (struct pollfd){.fd = wss_mgr_fd(a->mgr), .events = POLLIN};
    for (size_t i = 0; i < a->n_in && !a->stopping; i++) {
      if (a->in[i].fd < 0) continue;
      in_at[i] = (int) n;
      pfd[n++] = (struct pollfd){.fd = a->in[i].fd, .events = POLLIN};
    }
    for (size_t i = 0; i < a->n_out; i++) {
      if (a->out[i].fd < 0 || a->out[i].qlen == 0) continue;
      out_at[i] = (int) n;
      pfd[n++] = (struct pollfd){.fd = a->out[i].fd, .events = POLLOUT};
    }
    int timeout = a->stopping ? (int) (a->deadline - now) : -1;
    if (poll(pfd, n, timeout) < 0 && errno != EINTR) {
      logmsg("poll: %s", strerror(errno));
      return false;
    }

    if (pfd[0].revents & POLLIN) {
      unsigned char sig[16];
      while (read(sig_pipe[0], sig, sizeof sig) > 0) {
      }
      if (a->stopping) {
        a->deadline = now; /* a second signal: do not wait any longer */
      } else {
        logmsg("shutting down");
        begin_shutdown(a);
      }
    }
    for (size_t i = 0; i < a->n_in; i++) {
      if (in_at[i] >= 0 && pfd[in_at[i]].revents && !a->stopping) input_readable(a, &a->in[i]);
    }
    for (size_t i = 0; i < a->n_out; i++) {
      if (out_at[i] >= 0 && pfd[out_at[i]].revents) out_flush(&a->out[i]);
    }
    run_manager(a);
  }
}

int main(int argc, char **argv) {
  static struct app app; /* zeroed: every field not set below starts at 0/NULL/false */
  struct app *a = &app;
  config_defaults(&a->cfg);
  a->next_id = 1;
  a->by_id.by_id = true;
  parse_args(argc, argv, &a->cfg);

  setup_signals();
  if (a->cfg.access_log) {
    a->access_log = fopen(a->cfg.access_log, "a");
    if (!a->access_log) {
      logmsg("cannot open the access log %s: %s", a->cfg.access_log, strerror(errno));
      return 1;
    }
  }
  a->mgr = wss_mgr_new(NULL);
  if (!a->mgr) {
    logmsg("cannot create the event manager");
    return 1;
  }
  inputs_open(a);
  outputs_open(a);
  start_listener(a);
  run_manager(a);

  if (!poll_loop(a)) return 1;

  /* Clients that did not answer the close in time are closed by wss_mgr_free; a strict
   * reader still hears of them. */
  size_t i = 0;
  for (struct client *c; (c = client_next(a, &i));) {
    if (a->cfg.strict && !a->cfg.echo) strict_notify(a, c->id, TYPE_CLOSE, NULL, 0);
  }
  outputs_close(a); /* last close notifications, best effort */
  wss_mgr_free(a->mgr);
  clients_free(a);
  inputs_close(a);
  if (a->access_log) fclose(a->access_log);
  logmsg("stopped");
  return 0;
}
