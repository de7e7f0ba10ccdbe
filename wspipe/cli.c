/* The command line: gwsocket's options, parsed as gwsocket parses them (getopt_long:
 * "--opt=value" or "--opt value", "-p 7890" or "-p7890", unique prefixes of long
 * options), so that scripts written for gwsocket keep working. A bad command line prints
 * the usage on stderr and exits with status 2; -h and -V print on stdout and exit 0. */
#include "wspipe.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>

void config_defaults(struct config *cfg) {
  cfg->port = DEFAULT_PORT;
  cfg->addr = DEFAULT_ADDR;
  cfg->pipein = DEFAULT_PIPEIN;
  cfg->pipeout = DEFAULT_PIPEOUT;
  cfg->max_frame = DEFAULT_MAX_FRAME;
}

static void usage(FILE *f) {
  fprintf(f,
          "wspipe %s: a gwsocket-compatible WebSocket server fed through named pipes\n"
          "\n"
          "Usage: wspipe [PORT] [options...]\n"
          "\n"
          "  PORT                      As the first argument: listen on 127.0.0.1:PORT\n"
          "                            (as the project's examples do; --addr still applies).\n"
          "  -p --port=<port>          Port to bind (default %d).\n"
          "  -h --help                 This help.\n"
          "  -V --version              Display version information and exit.\n"
          "  --access-log=<path/file>  Log each handshake in Combined Log Format.\n"
          "  --addr=<addr>             IP address to bind (default %s).\n"
          "  --echo-mode               Echo every message back to its sender.\n"
          "  --max-frame-size=<bytes>  Largest message, from clients (closed with 1009\n"
          "                            above it) and through the pipe (default %u).\n"
          "  --origin=<origin>         Refuse handshakes without this Origin (403).\n"
          "  --pipein=<path/file>      FIFO to read from (default %s).\n"
          "  --pipeout=<path/file>     FIFO to write to (default %s).\n"
          "  --std                     Enable --stdin and --stdout.\n"
          "  --stdin                   Send stdin to the clients too.\n"
          "  --stdout                  Send what the clients send to stdout too.\n"
          "  --strict                  Framed messages with client ids (12-byte header).\n"
          "  --ssl-cert=<cert.crt>     TLS certificate (PEM): serve wss://.\n"
          "  --ssl-key=<priv.key>      TLS private key (PEM).\n"
          "\n"
          "See docs/wspipe.md for the data modes and the buffering policy.\n",
          WSPIPE_VERSION, DEFAULT_PORT, DEFAULT_ADDR, DEFAULT_MAX_FRAME, DEFAULT_PIPEIN,
          DEFAULT_PIPEOUT);
}

/* `fmt` has one %s for `arg`; NULL when getopt_long has said what was wrong. */
static void bad_usage(const char *fmt, const char *arg) {
  if (fmt) {
    fputs("wspipe: ", stderr);
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
  }
  usage(stderr);
  exit(2);
}

static long parse_number(const char *s, long min, long max, const char *what) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (!*s || *end || errno || v < min || v > max) bad_usage(what, s);
  return v;
}

static const char *nonempty(const char *s, const char *what) {
  if (!s || !*s) bad_usage(what, "");
  return s;
}

enum {
  OPT_ADDR = 256, /* above every short option's character */
  OPT_ECHO,
  OPT_MAX_FRAME,
  OPT_ORIGIN,
  OPT_PIPEIN,
  OPT_PIPEOUT,
  OPT_STD,
  OPT_STDIN,
  OPT_STDOUT,
  OPT_STRICT,
  OPT_ACCESS_LOG,
  OPT_SSL_CERT,
  OPT_SSL_KEY,
};

/* Fills `cfg` (set to config_defaults first), or exits: 0 after -h/-V, 2 on misuse. */
void parse_args(int argc, char **argv, struct config *cfg) {
  static const struct option opts[] = {
      {"port", required_argument, NULL, 'p'},
      {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, 'V'},
      {"addr", required_argument, NULL, OPT_ADDR},
      {"echo-mode", no_argument, NULL, OPT_ECHO},
      {"max-frame-size", required_argument, NULL, OPT_MAX_FRAME},
      {"origin", required_argument, NULL, OPT_ORIGIN},
      {"pipein", required_argument, NULL, OPT_PIPEIN},
      {"pipeout", required_argument, NULL, OPT_PIPEOUT},
      {"std", no_argument, NULL, OPT_STD},
      {"stdin", no_argument, NULL, OPT_STDIN},
      {"stdout", no_argument, NULL, OPT_STDOUT},
      {"strict", no_argument, NULL, OPT_STRICT},
      {"access-log", required_argument, NULL, OPT_ACCESS_LOG},
      {"ssl-cert", required_argument, NULL, OPT_SSL_CERT},
      {"ssl-key", required_argument, NULL, OPT_SSL_KEY},
      {NULL, 0, NULL, 0},
  };
  if (argc > 1 && argv[1][0] >= '0' && argv[1][0] <= '9') {
    /* The form every example program of the project takes: the port first, loopback only. */
    cfg->port = parse_number(argv[1], 0, 65535, "bad port: '%s'");
    cfg->addr = "127.0.0.1";
    argv[1] = argv[0];
    argc--;
    argv++;
  }
  int o;
  while ((o = getopt_long(argc, argv, "p:hV", opts, NULL)) != -1) {
    switch (o) {
    case 'p':
      cfg->port = parse_number(optarg, 0, 65535, "bad port: '%s'");
      break;
    case 'h':
      usage(stdout);
      exit(0);
    case 'V':
      printf("wspipe %s (libwsserver %s)\n", WSPIPE_VERSION, wss_version());
      exit(0);
    case OPT_ADDR:
      cfg->addr = nonempty(optarg, "empty --addr%s");
      break;
    case OPT_ECHO:
      cfg->echo = true;
      break;
    case OPT_MAX_FRAME:
      cfg->max_frame =
          (uint32_t) parse_number(optarg, 1, MAX_FRAME_LIMIT, "bad --max-frame-size: '%s'");
      break;
    case OPT_ORIGIN:
      cfg->origin = nonempty(optarg, "empty --origin%s");
      break;
    case OPT_PIPEIN:
      cfg->pipein = nonempty(optarg, "empty --pipein%s");
      break;
    case OPT_PIPEOUT:
      cfg->pipeout = nonempty(optarg, "empty --pipeout%s");
      break;
    case OPT_STD:
      cfg->use_stdin = cfg->use_stdout = true;
      break;
    case OPT_STDIN:
      cfg->use_stdin = true;
      break;
    case OPT_STDOUT:
      cfg->use_stdout = true;
      break;
    case OPT_STRICT:
      cfg->strict = true;
      break;
    case OPT_ACCESS_LOG:
      cfg->access_log = nonempty(optarg, "empty --access-log%s");
      break;
    case OPT_SSL_CERT:
      cfg->ssl_cert = nonempty(optarg, "empty --ssl-cert%s");
      break;
    case OPT_SSL_KEY:
      cfg->ssl_key = nonempty(optarg, "empty --ssl-key%s");
      break;
    default: /* getopt_long said what was wrong */
      bad_usage(NULL, NULL);
    }
  }
  if (optind < argc) bad_usage("unexpected argument: '%s'", argv[optind]);
  if (!cfg->ssl_cert != !cfg->ssl_key) bad_usage("--ssl-cert and --ssl-key go together%s", "");
}
