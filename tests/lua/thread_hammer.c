/* Producer threads for threads_spec.lua. LuaJIT cannot start threads, so the spec
 * compiles this into a shared object and loads it with ffi.load. The threads call
 * wss_mgr_wakeup and wss_send_threadsafe on a manager that the Lua side polls; the
 * function pointers come from Lua, so that they are those of the library instance
 * Lua loaded.
 *
 * Wakeup thread i passes conn = i + 1 and, as data, its sequence number (8 bytes,
 * native order): 1, 2, 3... counting only the calls that were accepted. Send thread
 * i sends 16 bytes on one connection: i + 1, then the sequence number. So the Lua side
 * can check that everything accepted arrived, once and in order.
 *
 * A watchdog thread stops the producers when the Lua side has been inside one poll
 * for longer than a limit (hammer_poll_begin / hammer_poll_end around each poll):
 * if polling livelocks while the threads push, the test fails instead of hanging
 * with its memory growing. The producers also stop after a total number of calls. */
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

typedef uint32_t (*wakeup_fn)(const void *mgr, uint64_t conn, const uint8_t *data, size_t len);
typedef uint32_t (*send_fn)(const void *mgr, uint64_t conn, const uint8_t *data, size_t len, uint32_t opcode);

#define MAX_THREADS 64

struct producer {
  pthread_t th;
  int index;
  int sender; /* 0: wss_mgr_wakeup, 1: wss_send_threadsafe */
  uint64_t max_calls;
  uint64_t accepted;
  uint64_t refused;
  uint32_t last_refusal;
};

static const void *g_mgr;
static wakeup_fn g_wakeup;
static send_fn g_send;
static uint64_t g_send_conn;
static int g_n;
static struct producer g_p[MAX_THREADS];
static int g_stop;
static uint64_t g_calls_made, g_max_calls; /* by all wakeup threads together */
static pthread_t g_watchdog;
static int g_watchdog_run;
static int g_watchdog_fired;
static uint64_t g_poll_started_ns; /* 0: not inside a poll */
static uint64_t g_poll_limit_ns;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *produce(void *arg) {
  struct producer *p = arg;
  uint8_t buf[16];
  uint64_t seq = 0, calls = 0;
  uint64_t id = (uint64_t)p->index + 1;
  while (!__atomic_load_n(&g_stop, __ATOMIC_RELAXED) && calls < p->max_calls) {
    if (!p->sender && __atomic_add_fetch(&g_calls_made, 1, __ATOMIC_RELAXED) > g_max_calls) break;
    calls++;
    uint64_t next = seq + 1;
    uint32_t r;
    if (p->sender) {
      memcpy(buf, &id, 8);
      memcpy(buf + 8, &next, 8);
      r = g_send(g_mgr, g_send_conn, buf, 16, 0);
    } else {
      memcpy(buf, &next, 8);
      r = g_wakeup(g_mgr, id, buf, 8);
    }
    if (r == 0) {
      seq = next;
      p->accepted++;
    } else {
      p->refused++;
      p->last_refusal = r;
      sched_yield();
    }
  }
  return NULL;
}

static void *watchdog(void *arg) {
  (void)arg;
  struct timespec pause = {0, 2000000};
  while (__atomic_load_n(&g_watchdog_run, __ATOMIC_RELAXED)) {
    uint64_t started = __atomic_load_n(&g_poll_started_ns, __ATOMIC_RELAXED);
    if (started != 0 && now_ns() - started > g_poll_limit_ns) {
      __atomic_store_n(&g_watchdog_fired, 1, __ATOMIC_RELAXED);
      __atomic_store_n(&g_stop, 1, __ATOMIC_RELAXED);
    }
    nanosleep(&pause, NULL);
  }
  return NULL;
}

/* Starts n_wakeup + n_send producers and the watchdog. Returns 0, or -1. */
int hammer_start(const void *mgr, void *wakeup, void *send, uint64_t send_conn, int n_wakeup, int n_send,
                 uint64_t max_wakeup_calls, uint64_t max_send_calls, double poll_limit_ms) {
  if (n_wakeup < 0 || n_send < 0 || n_wakeup + n_send > MAX_THREADS) return -1;
  g_mgr = mgr;
  g_wakeup = (wakeup_fn)wakeup;
  g_send = (send_fn)send;
  g_send_conn = send_conn;
  g_stop = 0;
  g_calls_made = 0;
  g_max_calls = max_wakeup_calls;
  g_watchdog_fired = 0;
  g_poll_started_ns = 0;
  g_poll_limit_ns = (uint64_t)(poll_limit_ms * 1e6);
  g_watchdog_run = 1;
  if (pthread_create(&g_watchdog, NULL, watchdog, NULL) != 0) return -1;
  g_n = 0;
  for (int i = 0; i < n_wakeup + n_send; i++) {
    struct producer *p = &g_p[i];
    memset(p, 0, sizeof *p);
    p->sender = i >= n_wakeup;
    p->index = p->sender ? i - n_wakeup : i;
    p->max_calls = p->sender ? max_send_calls : UINT64_MAX;
    if (pthread_create(&p->th, NULL, produce, p) != 0) break;
    g_n++;
  }
  return g_n == n_wakeup + n_send ? 0 : -1;
}

void hammer_poll_begin(void) { __atomic_store_n(&g_poll_started_ns, now_ns(), __ATOMIC_RELAXED); }
void hammer_poll_end(void) { __atomic_store_n(&g_poll_started_ns, 0, __ATOMIC_RELAXED); }

/* Stops the producers and the watchdog and waits for them. */
void hammer_stop(void) {
  __atomic_store_n(&g_stop, 1, __ATOMIC_RELAXED);
  for (int i = 0; i < g_n; i++) pthread_join(g_p[i].th, NULL);
  g_n = 0;
  __atomic_store_n(&g_watchdog_run, 0, __ATOMIC_RELAXED);
  pthread_join(g_watchdog, NULL);
}

/* Producer i (wakeup threads first, then send threads): what it counted. */
uint64_t hammer_accepted(int i) { return g_p[i].accepted; }
uint64_t hammer_refused(int i) { return g_p[i].refused; }
uint32_t hammer_last_refusal(int i) { return g_p[i].last_refusal; }
int hammer_watchdog_fired(void) { return __atomic_load_n(&g_watchdog_fired, __ATOMIC_RELAXED); }
