"""Interop checks with Python `websockets` as the client, against build/examples/ws_echo.

    python tests/py/interop_client.py ws://127.0.0.1:PORT [--suite full|tls] [--cafile CA]

Prints one line per check ("ok ..." / "FAIL ...") and a last line "N passed, M failed";
exits 1 if any check failed. Run by scripts/test-interop.sh.

full: text and binary echoes of 0 B .. 16 MiB, with and without permessage-deflate,
      whole and fragmented; ping/pong; close codes 1000 and 4000 echoed; a message over
      ws_echo's 64 MiB limit gets 1009.
tls:  over wss://, small and 16 MiB messages, with and without compression.
"""

import argparse
import asyncio
import os
import ssl
import sys
import time

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

MIB = 1 << 20
SIZES = [0, 1, 125, 126, 65535, 65536, MIB, 16 * MIB]
TLS_SIZES = [0, 1, 125, 126, 65535, 65536, 16 * MIB]
# ws_echo's max_message_bytes (examples/ws_echo.c).
ECHO_LIMIT = 64 * MIB

passed = 0
failed = 0


def report(ok, name, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok   {name}", flush=True)
    else:
        failed += 1
        print(f"FAIL {name}: {detail}", flush=True)


def text_of(size):
    """`size` bytes of UTF-8 with one- to four-byte characters, as a str."""
    unit = "aκόσμε€𝄞z "
    b = (unit * (size // len(unit.encode()) + 2)).encode()[:size]
    # Cut back to a character boundary, pad with ASCII to the exact size.
    while b and (b[-1] & 0xC0) == 0x80:
        b = b[:-1]
    if b and b[-1] >= 0xC0:
        b = b[:-1]
    return (b + b"." * (size - len(b))).decode()


def pieces(data, n=3):
    """`data` in n pieces (text split on characters; the last may be empty)."""
    k = max(1, len(data) // n)
    return [data[:k], data[k : 2 * k], data[2 * k :]]


def timeout_for(size):
    # Generous: a 16 MiB round trip takes about a second here.
    return 5 + size / MIB


async def close_quietly(ws):
    """Closes, ignoring errors of a connection that is already gone."""
    try:
        await asyncio.wait_for(ws.close(), 10)
    except Exception:  # noqa: BLE001 - websockets may trip over a dead transport
        pass


async def echo(ws, data, fragmented):
    if fragmented:
        await asyncio.wait_for(ws.send(pieces(data)), timeout_for(len(data)))
    else:
        await asyncio.wait_for(ws.send(data), timeout_for(len(data)))
    return await asyncio.wait_for(ws.recv(), timeout_for(len(data)))


def opts(compression, cafile):
    o = dict(compression=compression, max_size=None, proxy=None, ping_interval=None,
             open_timeout=10, close_timeout=10)
    if cafile:
        ctx = ssl.create_default_context(cafile=cafile)
        o["ssl"] = ctx
    return o


async def echo_suite(url, sizes, cafile, label):
    for compression in (None, "deflate"):
        cname = compression or "plain"
        for fragmented in (False, True):
            fname = "fragmented" if fragmented else "whole"
            ws = None
            try:
                ws = await connect(url, **opts(compression, cafile))
                ext = ws.response.headers.get("Sec-WebSocket-Extensions", "")
                report(("permessage-deflate" in ext) == bool(compression),
                       f"{label} {cname} {fname}: extension agreed as offered", repr(ext))
                for size in sizes:
                    for kind in ("text", "binary"):
                        name = f"{label} {cname} {fname} {kind} {size} B"
                        data = text_of(size) if kind == "text" else os.urandom(size)
                        t0 = time.monotonic()
                        try:
                            got = await echo(ws, data, fragmented)
                        except (asyncio.TimeoutError, ConnectionClosed, OSError) as e:
                            report(False, name, f"{type(e).__name__} {e} after "
                                   f"{time.monotonic() - t0:.1f} s")
                            # The connection may be stuck: start a new one.
                            await close_quietly(ws)
                            ws = await connect(url, **opts(compression, cafile))
                            continue
                        report(got == data and type(got) is type(data), name,
                               f"got {type(got).__name__} of {len(got)}")
                await asyncio.wait_for(ws.close(1000), 20)
                report(ws.close_code == 1000, f"{label} {cname} {fname}: close 1000 echoed",
                       f"{ws.close_code}")
            except Exception as e:  # noqa: BLE001 - every failure is a failed check
                report(False, f"{label} {cname} {fname}: session", f"{type(e).__name__}: {e}")
                if ws is not None:
                    await close_quietly(ws)


async def ping_check(url):
    async with connect(url, **opts(None, None)) as ws:
        waiter = await ws.ping(b"interop ping")
        await asyncio.wait_for(waiter, 10)
        report(True, "ping answered")


async def close_code_check(url, code, reason):
    ws = await connect(url, **opts("deflate", None))
    await ws.send("before the close")
    await asyncio.wait_for(ws.recv(), 10)
    await asyncio.wait_for(ws.close(code, reason), 20)
    report(ws.close_code == code, f"client close {code} echoed",
           f"server answered {ws.close_code} {ws.close_reason!r}")


async def too_big_check(url, compression):
    ws = await connect(url, **opts(compression, None))
    # Zeros compress to almost nothing: the server must stop inflating at its limit.
    big = b"\0" * (ECHO_LIMIT + 1) if compression else os.urandom(ECHO_LIMIT + 1)
    name = f"message over 64 MiB ({compression or 'plain'}): close 1009"
    try:
        await asyncio.wait_for(ws.send(big), 60)
        await asyncio.wait_for(ws.recv(), 60)
        report(False, name, "the message was echoed")
    except ConnectionClosed as e:
        code = e.rcvd.code if e.rcvd else None
        report(code == 1009, name, f"closed with {code} ({e})")
    finally:
        await close_quietly(ws)


async def close_suite(url):
    checks = [("ping answered", ping_check(url))]
    for code, reason in ((1000, ""), (4000, "custom"), (1001, "going away"), (3999, "x")):
        checks.append((f"client close {code} echoed", close_code_check(url, code, reason)))
    for compression in (None, "deflate"):
        checks.append((f"message over 64 MiB ({compression or 'plain'})",
                       too_big_check(url, compression)))
    for name, check in checks:
        try:
            await check
        except Exception as e:  # noqa: BLE001 - every failure is a failed check
            report(False, name, f"{type(e).__name__}: {e}")


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--suite", choices=("full", "tls"), default="full")
    p.add_argument("--cafile")
    a = p.parse_args()
    if a.suite == "full":
        await echo_suite(a.url, SIZES, None, "ws")
        await close_suite(a.url)
    else:
        await echo_suite(a.url, TLS_SIZES, a.cafile, "wss")
    print(f"{passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
