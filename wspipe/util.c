/* Small helpers every part of wspipe uses.
 *
 * Diagnostics go to stderr, each line prefixed "wspipe: ": standard output carries data
 * only (--stdout), so nothing else may ever be printed there. */
#include "wspipe.h"

#include <stdarg.h>
#include <stdlib.h>
#include <time.h>

void logmsg(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("wspipe: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

/* Deadlines (shutdown wait, quick end-of-file detection) use the monotonic clock: a
 * wall-clock jump must not cut the shutdown short or stretch it. */
int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A server with no memory left has nothing sensible to go on with: it says so and
 * exits, rather than threading an error through every buffer. */
void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q) {
    logmsg("out of memory (%zu bytes)", n);
    exit(1);
  }
  return q;
}
