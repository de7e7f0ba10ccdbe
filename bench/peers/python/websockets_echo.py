"""Python `websockets` echo server (asyncio API), permessage-deflate accepted (its default).

    python websockets_echo.py PORT      (0 picks a free port; the port is printed)
"""
import asyncio
import sys

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed


async def echo(ws):
    try:
        async for msg in ws:
            await ws.send(msg)
    except ConnectionClosed:
        pass  # the load generator drops idle connections without a close handshake


async def main(port):
    async with serve(echo, "127.0.0.1", port, max_size=64 * 1024 * 1024, compression="deflate",
                     ping_interval=None, backlog=4096) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"websockets_echo listening on ws://127.0.0.1:{port}", flush=True)
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    try:
        asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
    except KeyboardInterrupt:
        pass
