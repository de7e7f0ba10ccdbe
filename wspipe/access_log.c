/* --access-log: one line per handshake, accepted or not, in Combined Log Format (the
 * Common Log Format plus referer and user agent), so that GoAccess and the usual log
 * tools read it as they read a web server's log (GoAccess: --log-format=COMBINED). */
#include "wspipe.h"

#include <time.h>

/* Request bytes come from the peer: '"' and '\' are escaped with '\' and anything
 * outside printable ASCII is written as \xHH, so one request is always one line and a
 * client cannot forge fields or lines of its own. */
static void log_escaped(FILE *f, wss_str s) {
  for (size_t i = 0; i < s.len; i++) {
    unsigned char c = s.ptr[i];
    if (c == '"' || c == '\\') {
      fputc('\\', f);
      fputc(c, f);
    } else if (c < 0x20 || c >= 0x7f) {
      fprintf(f, "\\x%02x", c);
    } else {
      fputc(c, f);
    }
  }
}

/* `bytes`: the size of the body wspipe sent (a 403), 0 for none ("-"). Flushed at once:
 * a tail -f sees each handshake as it happens. */
void access_log_line(FILE *f, const char *ip, const wss_http_request *req, int status,
                     size_t bytes, wss_str referer, wss_str agent) {
  char when[64];
  time_t t = time(NULL);
  struct tm tm;
  localtime_r(&t, &tm);
  strftime(when, sizeof when, "[%d/%b/%Y:%H:%M:%S %z]", &tm);
  fprintf(f, "%s - - %s \"", ip[0] ? ip : "-", when);
  log_escaped(f, req->method);
  fputc(' ', f);
  log_escaped(f, req->target);
  fputc(' ', f);
  log_escaped(f, req->version);
  fprintf(f, "\" %d ", status);
  if (bytes) {
    fprintf(f, "%zu", bytes);
  } else {
    fputc('-', f);
  }
  fputs(" \"", f);
  log_escaped(f, referer);
  fputs("\" \"", f);
  log_escaped(f, agent);
  fputs("\"\n", f);
  fflush(f);
}
