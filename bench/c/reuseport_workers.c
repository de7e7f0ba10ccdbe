/* reuseport_workers: N processes, each with its own manager, all listening on the same
 * 127.0.0.1 port with `reuse_port = true` (SO_REUSEPORT: the kernel spreads incoming
 * connections over them). Each worker is a WebSocket echo server (as examples/ws_echo.c)
 * or, with --http, an HTTP hello server (as examples/http_hello.c).
 *
 *   reuseport_workers [--workers N] [--http] [--cpus a,b,...] PORT
 *
 * PORT (anywhere among the arguments) 0 picks a free port. Prints "reuseport_workers listening on ...:PORT pids=P1,P2"
 * once every worker listens. --cpus pins worker i to the i-th listed CPU. SIGTERM or
 * SIGINT stops the workers; a worker also stops when the parent dies. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "wsserver.h"

#define MAX_WORKERS 64

static pid_t pids[MAX_WORKERS];
static int nworkers;

static void stop_all(int sig) {
  for (int i = 0; i < nworkers; i++)
    if (pids[i] > 0) kill(pids[i], SIGTERM);
  (void) sig;
}

static int worker(int port, int http, int ready_fd) {
  char url[64];
  snprintf(url, sizeof url, "%s://127.0.0.1:%d", http ? "http" : "ws", port);
  wss_listen_opts opts;
  memset(&opts, 0, sizeof opts);
  opts.struct_size = sizeof opts;
  opts.reuse_port = true;
  if (!http) {
    opts.ws_deflate = true;
    opts.max_frame_bytes = 64u << 20;
    opts.max_message_bytes = 64u << 20;
    opts.max_send_buffer = 256u << 20;
  }
  wss_mgr *mgr = wss_mgr_new(NULL);
  wss_id listener;
  wss_result r = mgr ? wss_mgr_listen(mgr, url, &opts, &listener) : WSS_RESULT_IO;
  if (r != WSS_RESULT_OK) {
    fprintf(stderr, "worker %d: listen %s: %s: %s\n", (int) getpid(), url, wss_result_str(r),
            mgr ? wss_mgr_last_error(mgr) : "");
    return 1;
  }
  char ok = 1;
  if (write(ready_fd, &ok, 1) != 1) return 1;
  close(ready_fd);
  static const char body[] = "Hello, world!\n";
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
        } else if (ev->kind == WSS_EV_HTTP_MSG) {
          wss_http_reply(mgr, ev->conn, 200, "Content-Type: text/plain\r\n", (const uint8_t *) body,
                         sizeof body - 1);
        }
      }
    }
  }
}

int main(int argc, char **argv) {
  int port = -1, http = 0, cpus[MAX_WORKERS], ncpus = 0;
  nworkers = 1;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc) {
      nworkers = atoi(argv[++i]);
    } else if (strcmp(argv[i], "--http") == 0) {
      http = 1;
    } else if (strcmp(argv[i], "--cpus") == 0 && i + 1 < argc) {
      for (char *s = strtok(argv[++i], ","); s && ncpus < MAX_WORKERS; s = strtok(NULL, ",")) cpus[ncpus++] = atoi(s);
    } else if (port < 0 && argv[i][0] >= '0' && argv[i][0] <= '9') {
      port = atoi(argv[i]);
    } else {
      fprintf(stderr, "unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  if (port < 0 || port > 65535) {
    fprintf(stderr, "usage: %s [--workers N] [--http] [--cpus a,b,...] PORT\n", argv[0]);
    return 2;
  }
  if (nworkers < 1 || nworkers > MAX_WORKERS) {
    fprintf(stderr, "--workers: 1..%d\n", MAX_WORKERS);
    return 2;
  }
  /* Reserve the port: a bound (not listening) SO_REUSEPORT socket, so that PORT 0 gives
   * every worker the same free port. Closed once the workers listen. */
  int rs = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(rs, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t) port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t al = sizeof a;
  if (bind(rs, (struct sockaddr *) &a, sizeof a) != 0 || getsockname(rs, (struct sockaddr *) &a, &al) != 0) {
    perror("bind");
    return 1;
  }
  port = ntohs(a.sin_port);

  int ready[2];
  if (pipe(ready) != 0) return 1;
  signal(SIGTERM, stop_all);
  signal(SIGINT, stop_all);
  pid_t parent = getpid();
  for (int i = 0; i < nworkers; i++) {
    pid_t p = fork();
    if (p < 0) {
      perror("fork");
      stop_all(0);
      return 1;
    }
    if (p == 0) {
      signal(SIGTERM, SIG_DFL);
      signal(SIGINT, SIG_DFL);
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (getppid() != parent) _exit(1);
      close(rs);
      close(ready[0]);
      if (ncpus > 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpus[i % ncpus], &set);
        sched_setaffinity(0, sizeof set, &set);
      }
      _exit(worker(port, http, ready[1]));
    }
    pids[i] = p;
  }
  close(ready[1]);
  for (int i = 0; i < nworkers; i++) {
    char c;
    if (read(ready[0], &c, 1) != 1) {
      fprintf(stderr, "a worker failed to start\n");
      stop_all(0);
      return 1;
    }
  }
  close(rs);
  printf("reuseport_workers listening on %s://127.0.0.1:%d pids=", http ? "http" : "ws", port);
  for (int i = 0; i < nworkers; i++) printf(i ? ",%d" : "%d", (int) pids[i]);
  printf("\n");
  fflush(stdout);
  int status, left = nworkers;
  while (left > 0) {
    if (wait(&status) > 0) left--;
    else if (errno != EINTR) break;
  }
  return 0;
}
