"""A WebSocket client for the Lua specs (Python `websockets`, an independent peer).

    python ws_client.py URL MODE [ARGS...]

Modes:
  echo N SIZE     send N text messages and N binary ones of SIZE bytes, check each echo
  hello TEXT      send TEXT, print what comes back
  close CODE WHY  send a close frame with CODE and reason WHY, print the reply's code
  listen N        print N messages received, then close with 1000
Prints one line per result; exits 1 on any mismatch.
"""
import asyncio
import os
import sys

from websockets.asyncio.client import connect


async def main():
    url, mode, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    deflate = os.environ.get("LM_WS_DEFLATE", "1") == "1"
    protocols = os.environ.get("LM_WS_PROTOCOLS")
    kwargs = {"max_size": 64 << 20, "open_timeout": 5, "close_timeout": 5}
    if not deflate:
        kwargs["compression"] = None
    if protocols:
        kwargs["subprotocols"] = protocols.split(",")
    async with connect(url, **kwargs) as ws:
        exts = ",".join(e.name for e in ws.protocol.extensions) or "none"
        print(f"open extensions={exts} subprotocol={ws.subprotocol}", flush=True)
        if mode == "echo":
            n, size = int(args[0]), int(args[1])
            for i in range(n):
                text = (f"msg {i} é " * (size // 8 + 1))[:size]
                await ws.send(text)
                got = await asyncio.wait_for(ws.recv(), 10)
                if got != text:
                    print(f"text mismatch at {i}")
                    sys.exit(1)
                data = bytes((i + j) % 256 for j in range(size))
                await ws.send(data)
                got = await asyncio.wait_for(ws.recv(), 10)
                if got != data:
                    print(f"binary mismatch at {i}")
                    sys.exit(1)
            print(f"echo ok {n} {size}")
        elif mode == "hello":
            await ws.send(args[0])
            print("got " + await asyncio.wait_for(ws.recv(), 10))
        elif mode == "close":
            await ws.close(int(args[0]), args[1])
            rcvd = ws.protocol.close_rcvd
            print(f"closed rcvd={rcvd.code if rcvd else None} reason={rcvd.reason if rcvd else None}")
        elif mode == "listen":
            for _ in range(int(args[0])):
                print("got " + str(await asyncio.wait_for(ws.recv(), 10)), flush=True)


asyncio.run(main())
