// Native uWebSockets (C++, the library inside Bun) for the benchmark: WebSocket echo on
// any path and HTTP "Hello, world!" on GET, on one port, one thread, plain TCP.
//   uws_echo PORT      (0 picks a free port; the port is printed)
// permessage-deflate is accepted (shared compressor and decompressor, as Bun configures
// it) and used only on connections that negotiated it.
#include "App.h"

#include <cstdio>
#include <cstdlib>

int main(int argc, char **argv) {
    int port = argc > 1 ? std::atoi(argv[1]) : 0;
    struct PerSocketData {};
    uWS::App()
        .get("/*",
             [](auto *res, auto * /*req*/) {
                 res->writeHeader("Content-Type", "text/plain")->end("Hello, world!\n");
             })
        .ws<PerSocketData>(
            "/*",
            {
                .compression = uWS::CompressOptions(uWS::SHARED_COMPRESSOR | uWS::SHARED_DECOMPRESSOR),
                .maxPayloadLength = 64 * 1024 * 1024,
                .idleTimeout = 0,
                .maxBackpressure = 256 * 1024 * 1024,
                .closeOnBackpressureLimit = false,
                .resetIdleTimeoutOnSend = false,
                .sendPingsAutomatically = false,
                .message = [](auto *ws, std::string_view message,
                              uWS::OpCode opCode) { ws->send(message, opCode, true); },
            })
        .listen("127.0.0.1", port,
                [](auto *listen_socket) {
                    if (!listen_socket) {
                        std::fprintf(stderr, "uws_echo: cannot listen\n");
                        std::exit(1);
                    }
                    std::printf("uws_echo listening on ws://127.0.0.1:%d\n",
                                us_socket_local_port(0, (struct us_socket_t *)listen_socket));
                    std::fflush(stdout);
                })
        .run();
    return 1;
}
