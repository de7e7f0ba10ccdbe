"""picows echo server (Cython, frame-level API; no permessage-deflate).

    python picows_echo.py PORT      (0 picks a free port; the port is printed)
"""
import asyncio
import sys

from picows import WSListener, WSMsgType, ws_create_server


class Echo(WSListener):
    def on_ws_frame(self, transport, frame):
        t = frame.msg_type
        if t == WSMsgType.TEXT or t == WSMsgType.BINARY or t == WSMsgType.CONTINUATION:
            # frames go back as they came: with fin, so fragmented messages keep their shape
            transport.send(t, frame.get_payload_as_memoryview(), frame.fin)
        elif t == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()


async def main(port):
    server = await ws_create_server(lambda _req: Echo(), "127.0.0.1", port,
                                    max_frame_size=64 * 1024 * 1024, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    print(f"picows_echo listening on ws://127.0.0.1:{port}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
    except KeyboardInterrupt:
        pass
