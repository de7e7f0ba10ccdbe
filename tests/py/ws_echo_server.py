"""A Python `websockets` echo server for the library's own client (tests/ws_api.rs,
python_websockets_server_with_own_client).

    python -m ws_echo_server        (with tests/py on PYTHONPATH)

Listens on two free ports of 127.0.0.1, one offering permessage-deflate and one not,
prints "ports DEFLATE PLAIN" and serves until stdin closes (or 120 s pass). Every text
and binary message is echoed, except two commands:
  "?extensions"  -> a text reply with the agreed Sec-WebSocket-Extensions ("" if none)
  "?close CODE"  -> the server closes with CODE and the reason "closing as asked"
Subprotocol "v1" is supported.
"""

import asyncio
import sys

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed


async def handler(ws):
    try:
        async for message in ws:
            if message == "?extensions":
                await ws.send(ws.response.headers.get("Sec-WebSocket-Extensions", ""))
            elif isinstance(message, str) and message.startswith("?close "):
                await ws.close(int(message.split()[1]), "closing as asked")
                return
            else:
                await ws.send(message)
    except ConnectionClosed:
        # Closes with codes other than 1000/1001 end the loop with an exception.
        pass


async def main():
    common = dict(subprotocols=["v1"], max_size=64 << 20, ping_interval=None)
    async with serve(handler, "127.0.0.1", 0, compression="deflate", **common) as deflate, \
            serve(handler, "127.0.0.1", 0, compression=None, **common) as plain:
        ports = [s.sockets[0].getsockname()[1] for s in (deflate, plain)]
        print("ports", *ports, flush=True)
        loop = asyncio.get_running_loop()
        stdin_closed = loop.run_in_executor(None, sys.stdin.read)
        try:
            await asyncio.wait_for(stdin_closed, timeout=120)
        except asyncio.TimeoutError:
            pass


if __name__ == "__main__":
    asyncio.run(main())
    # The executor thread blocked on stdin may outlive the loop: leave at once.
    sys.stdout.flush()
    import os

    os._exit(0)
