"""End-to-end tests of build/wspipe, driven as a user drives gwsocket.

    python tests/wspipe/test_wspipe.py [--bin build/wspipe] [-k SUBSTRING]

Each test starts the program with its command line (always --addr=127.0.0.1 and a free
port, FIFOs in a temporary directory), writes to its pipes (or stdin) from here, reads
its output pipe (or stdout), and connects real WebSocket clients (Python `websockets`).
Prints one line per test ("ok ..." / "FAIL ...") and a last line "N passed, M failed";
exits 1 if any failed. Run by scripts/test-wspipe.sh.

No test may leave a process behind: every program a test starts goes through spawn(),
and one still running when its test ends is killed and fails that test (whatever the
test itself found). SIGTERM (scripts/test-wspipe.sh's timeout) ends the run the same
way, with nothing left running.
"""

import argparse
import asyncio
import errno
import os
import re
import select
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

BIN = "build/wspipe"
WRAP = []  # a command the program runs under (valgrind)
SLOW = 1.0  # timeouts are multiplied by this (valgrind is slower)
PIPE_BUF = 4096
ADDR_PAD = 46  # gwsocket's INET6_ADDRSTRLEN

TESTS = []
LIVE = []  # every process spawn() started and reap() has not seen end yet


def test(fn=None, timing=False):
    """Registers a test; timing=True: it measures time or CPU, so not under valgrind."""
    def register(f):
        f.timing = timing
        TESTS.append(f)
        return f
    return register(fn) if fn else register


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def spawn(argv, **kwargs):
    """subprocess.Popen, recorded so that reap() can find what a test left running."""
    proc = subprocess.Popen(argv, **kwargs)
    LIVE.append(proc)
    return proc


def reap():
    """Kills every spawned process still running; returns their command lines."""
    left = []
    for proc in LIVE:
        if proc.poll() is None:
            left.append(" ".join(map(str, proc.args)))
            proc.kill()
            proc.wait()
    LIVE.clear()
    return left


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hdr(cid, typ, length):
    return struct.pack(">III", cid, typ, length)


class Server:
    """One wspipe process with its FIFOs in a temporary directory."""

    def __init__(self, *args, stdin=False, stdout=False, pipes=True):
        self.dir = tempfile.TemporaryDirectory(prefix="wspipe-test-")
        self.pipein = os.path.join(self.dir.name, "in.fifo")
        self.pipeout = os.path.join(self.dir.name, "out.fifo")
        self.port = free_port()
        argv = [*WRAP, BIN, "--addr=127.0.0.1", f"--port={self.port}"]
        if pipes:
            argv += [f"--pipein={self.pipein}", f"--pipeout={self.pipeout}"]
        argv += list(args)
        self.argv = argv
        self.log = []
        self.proc = spawn(
            argv,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        self.out_fd = None
        self.in_fd = None

    def _drain(self):
        for line in self.proc.stderr:
            self.log.append(line.decode("utf-8", "replace").rstrip("\n"))

    def wait_log(self, pattern, timeout=5.0):
        deadline = time.monotonic() + timeout * SLOW
        rx = re.compile(pattern)
        while time.monotonic() < deadline:
            for line in list(self.log):
                if rx.search(line):
                    return line
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.01)
        raise Failure(f"no log line matching {pattern!r}; log: {self.log}")

    def ready(self):
        line = self.wait_log(r"listening on ")
        check(f":{self.port} " in line, f"unexpected listening line {line!r}")
        return self

    @property
    def url(self):
        return f"ws://127.0.0.1:{self.port}"

    def open_out(self):
        """Attach a reader to the output FIFO (non-blocking)."""
        self.out_fd = os.open(self.pipeout, os.O_RDONLY | os.O_NONBLOCK)
        return self.out_fd

    def open_in(self, timeout=2.0):
        """Attach a writer to the input FIFO. ENXIO means no reader at this instant (the
        server reopens the FIFO after a writer leaves): retry for a bounded time."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.in_fd = os.open(self.pipein, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError as e:
                if e.errno != errno.ENXIO or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        os.set_blocking(self.in_fd, True)
        return self.in_fd

    def write_in(self, data):
        if self.in_fd is None:
            self.open_in()
        view = memoryview(data)
        while view:
            n = os.write(self.in_fd, view)
            view = view[n:]

    def close_in(self):
        if self.in_fd is not None:
            os.close(self.in_fd)
            self.in_fd = None

    def __enter__(self):
        try:
            return self.ready()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, exc_type, exc, tb):
        """SIGTERM, then check the exit status, unless the test failed already."""
        rc = self.proc.poll()
        try:
            if rc is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    rc = self.proc.wait(8)
                except subprocess.TimeoutExpired:
                    rc = "still running 8 s after SIGTERM"
        finally:
            self.cleanup()
        if exc_type is None and rc != 0:
            detail = "\n".join(self.log) if WRAP else str(self.log[-5:])
            raise Failure(f"wspipe exit status: {rc}; log: {detail}")
        return False

    def wait_exit(self, timeout=8.0):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise Failure(f"wspipe did not exit within {timeout} s")
        self._reader.join(2)
        return rc

    def stop(self, sig=signal.SIGTERM, timeout=8.0):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise Failure(f"wspipe did not exit within {timeout} s after {sig!r}")
        self._reader.join(2)
        return rc

    def cleanup(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for fd in (self.out_fd, self.in_fd):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f:
                try:
                    f.close()
                except OSError:
                    pass
        self.dir.cleanup()

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # fields[0] is field 3 (state): utime is field 14, stime field 15.
        ticks = int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")


async def read_exact(fd, n, timeout=5.0):
    """n bytes from a non-blocking fd, or Failure."""
    buf = bytearray()
    deadline = time.monotonic() + timeout * SLOW
    while len(buf) < n:
        try:
            chunk = os.read(fd, n - len(buf))
            if chunk:
                buf += chunk
                continue
            await asyncio.sleep(0.01)  # no writer attached yet
        except BlockingIOError:
            await asyncio.sleep(0.005)
        if time.monotonic() > deadline:
            raise Failure(f"timed out reading {n} bytes from the pipe (got {bytes(buf[:80])!r}...)")
    return bytes(buf)


async def read_available(fd, wait=0.3):
    await asyncio.sleep(wait)
    buf = bytearray()
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


async def read_strict(fd, timeout=5.0):
    h = await read_exact(fd, 12, timeout)
    cid, typ, length = struct.unpack(">III", h)
    payload = await read_exact(fd, length, timeout) if length else b""
    return cid, typ, payload


async def recv(ws, timeout=3.0):
    return await asyncio.wait_for(ws.recv(), timeout * SLOW)


async def recv_none(ws, wait=0.3):
    try:
        msg = await asyncio.wait_for(ws.recv(), wait)
    except asyncio.TimeoutError:
        return None
    return msg


async def open_client(srv, fd=None):
    """Connect a client; in strict mode with the output pipe read, return its id too."""
    ws = await connect(srv.url + "/", max_size=None, open_timeout=5 * SLOW)
    if fd is None:
        return ws
    cid, typ, payload = await read_strict(fd)
    check(typ == 0x10, f"expected an open notification, got type {typ:#x}")
    return ws, cid, payload


def run_cli(*args, timeout=5):
    return subprocess.run([*WRAP, BIN, *args], capture_output=True, timeout=timeout * SLOW,
                          stdin=subprocess.DEVNULL)


# --------------------------------------------------------------------------------------
# Command line


@test
async def cli_help_and_version():
    for flag in ("-h", "--help"):
        r = run_cli(flag)
        check(r.returncode == 0, f"{flag}: exit {r.returncode}")
        out = r.stdout.decode()
        for opt in ("--port", "--addr", "--pipein", "--pipeout", "--std", "--stdin", "--stdout",
                    "--strict", "--echo-mode", "--max-frame-size", "--origin", "--access-log",
                    "--ssl-cert", "--ssl-key", "--version"):
            check(opt in out, f"{flag}: {opt} missing from the help")
    for flag in ("-V", "--version"):
        r = run_cli(flag)
        check(r.returncode == 0, f"{flag}: exit {r.returncode}")
        check(re.match(r"wspipe \d+\.\d+\.\d+ \(libwsserver \d+\.\d+\.\d+\)", r.stdout.decode()),
              f"{flag}: {r.stdout!r}")


@test
async def cli_bad_options_exit_2_with_usage():
    cases = [
        ["--bogus"], ["-x"], ["-p", "abc"], ["-p", "70000"], ["--port=-1"], ["--port"],
        ["--max-frame-size=0"], ["--max-frame-size=12x"], ["--max-frame-size=99999999999"],
        ["--pipein="], ["--addr="], ["--ssl-cert=/nonexistent"], ["--ssl-key=/nonexistent"],
        ["stray-argument"], ["--echo-mode=1"],
    ]
    for args in cases:
        r = run_cli(*args)
        check(r.returncode == 2, f"{args}: exit {r.returncode}, want 2")
        check(b"Usage: wspipe" in r.stderr, f"{args}: no usage on stderr: {r.stderr[:200]!r}")
        check(r.stdout == b"", f"{args}: wrote to stdout: {r.stdout[:100]!r}")


@test
async def cli_short_and_long_port_forms():
    # -p PORT, -pPORT and --port PORT as getopt_long takes them (gwsocket parses the same way).
    # Also the form the project's example programs take, the port first, which listens on
    # 127.0.0.1.
    for form in (lambda p: ["--addr=127.0.0.1", "-p", str(p)], lambda p: ["--addr=127.0.0.1", f"-p{p}"],
                 lambda p: ["--addr=127.0.0.1", "--port", str(p)], lambda p: [str(p)]):
        d = tempfile.mkdtemp(prefix="wspipe-test-")
        port = free_port()
        proc = spawn([BIN, *form(port), f"--pipein={d}/i", f"--pipeout={d}/o"],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            # A program that prints nothing must fail the test, not hang it.
            ready, _, _ = select.select([proc.stderr], [], [], 5)
            line = proc.stderr.readline().decode() if ready else "(nothing within 5 s)"
            check(f"127.0.0.1:{port} " in line, f"{form(port)}: {line!r}")
            check(os.path.exists(f"{d}/i") and os.path.exists(f"{d}/o"), "FIFOs not created")
            check(os.path.isfile(f"{d}/i") is False, "input is not a FIFO")
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                rc = "still running 5 s after SIGTERM"
            proc.stderr.close()
            for f in ("i", "o"):
                os.unlink(f"{d}/{f}")
            os.rmdir(d)
        check(rc == 0, f"exit {rc}")


@test
async def refuses_a_pipe_path_that_is_a_regular_file():
    with tempfile.TemporaryDirectory(prefix="wspipe-test-") as d:
        with open(f"{d}/in", "w") as f:
            f.write("x")
        r = run_cli("--addr=127.0.0.1", f"--port={free_port()}", f"--pipein={d}/in",
                    f"--pipeout={d}/out")
        check(r.returncode == 1, f"exit {r.returncode}")
        check(b"not a FIFO" in r.stderr, r.stderr)


# --------------------------------------------------------------------------------------
# Standard mode


@test
async def std_broadcast_to_100_clients():
    with Server() as srv:
        clients = await asyncio.gather(*[open_client(srv) for _ in range(100)])
        await asyncio.sleep(0.1)
        for i in range(3):
            srv.write_in(f"update {i} ✓".encode())
            got = await asyncio.gather(*[recv(ws) for ws in clients])
            check(all(g == f"update {i} ✓" for g in got), f"message {i}: {set(got)}")
        await asyncio.gather(*[ws.close() for ws in clients])


@test
async def std_large_write_split_at_pipe_buf():
    with Server() as srv:
        ws = await open_client(srv)
        await asyncio.sleep(0.05)
        # 3 x PIPE_BUF + 100 bytes with a two-byte character across the first PIPE_BUF boundary.
        text = "a" * (PIPE_BUF - 1) + "é" + "b" * (2 * PIPE_BUF + 99)
        srv.write_in(text.encode())
        got = []
        while sum(len(m.encode()) for m in got) < len(text.encode()):
            m = await recv(ws)
            check(isinstance(m, str), "not a text message")
            check(len(m.encode()) <= PIPE_BUF + 3, f"a message of {len(m.encode())} bytes")
            got.append(m)
        check("".join(got) == text, "the pieces do not add up to what was written")
        check(len(got) >= 3, f"{len(got)} messages for {len(text.encode())} bytes")
        # Invalid UTF-8 goes out as text with '?' in place of the bad bytes (as gwsocket).
        srv.write_in(b"ok \xff\xfe ok")
        check(await recv(ws) == "ok ?? ok", "invalid UTF-8 not replaced")
        await ws.close()


@test
async def std_each_write_is_one_message():
    with Server() as srv:
        ws = await open_client(srv)
        await asyncio.sleep(0.05)
        for i in range(5):
            srv.write_in(f"line {i}\n".encode())
            check(await recv(ws) == f"line {i}\n", f"write {i}")
            await asyncio.sleep(0.02)
        await ws.close()


@test
async def std_clients_to_output_pipe():
    with Server() as srv:
        fd = srv.open_out()
        a = await open_client(srv)
        b = await open_client(srv)
        await a.send("from a;")
        check(await read_exact(fd, 7) == b"from a;", "text from a")
        await b.send(b"\x00\x01binary")
        check(await read_exact(fd, 8) == b"\x00\x01binary", "binary from b")
        big = os.urandom(200_000)
        await a.send(big)
        check(await read_exact(fd, len(big)) == big, "200 kB message")
        await a.close()
        await b.close()


@test
async def std_output_without_reader_then_reader_attaches():
    with Server() as srv:
        ws = await open_client(srv)
        await ws.send("nobody reads this")
        srv.wait_log(r"output pipe: no reader")
        fd = srv.open_out()
        await ws.send("now read")
        check(await read_exact(fd, 8) == b"now read", "message after the reader attached")
        srv.wait_log(r"output pipe: writing again \(1 message\(s\) dropped\)")
        # The clients were never held up: the pipe input still reaches them.
        srv.write_in(b"still live")
        check(await recv(ws) == "still live", "broadcast after drops")
        await ws.close()


@test(timing=True)
async def slow_output_reader_never_stalls_clients():
    with Server("--strict") as srv:
        fd = srv.open_out()  # attached, but not reading for now
        ws, cid, _ = await open_client(srv, fd)
        chunk = os.urandom(64 * 1024)
        t0 = time.monotonic()
        for _ in range(200):  # 12.8 MB: more than the pipe and the 8 MiB queue hold
            await ws.send(chunk)
        # The client is served at once all the same: a broadcast round trip.
        srv.write_in(hdr(0, 1, 4) + b"ping")
        check(await recv(ws, 5) == "ping", "broadcast while the reader is stuck")
        check(time.monotonic() - t0 < 10, "the client was held up")
        srv.wait_log(r"output pipe: reader too slow, queue full")
        # Whatever was kept comes out whole, in order, framed.
        count = 0
        while True:
            try:
                c, typ, payload = await read_strict(fd, timeout=1.0)
            except Failure:
                break
            check(c == cid and typ == 2 and payload == chunk, f"message {count} damaged")
            count += 1
        check(100 <= count < 200, f"{count} of 200 messages came through")
        await ws.send(b"after")
        c, typ, payload = await read_strict(fd)
        check((c, typ, payload) == (cid, 2, b"after"), "message after the queue drained")
        await ws.close()


@test
async def output_reader_leaves_and_another_attaches():
    with Server("--strict") as srv:
        fd = srv.open_out()
        ws, cid, _ = await open_client(srv, fd)
        await ws.send("one")
        check(await read_strict(fd) == (cid, 1, b"one"), "first reader")
        os.close(fd)
        srv.out_fd = None
        await ws.send("lost")  # no reader now: dropped
        await asyncio.sleep(0.1)
        fd = srv.open_out()
        await ws.send("two")
        check(await read_strict(fd) == (cid, 1, b"two"), "second reader starts at a boundary")
        # A reader that leaves with a backlog queued: the next one still starts clean.
        chunk = b"z" * 100_000
        for _ in range(5):
            await ws.send(chunk)
        await asyncio.sleep(0.2)
        os.close(fd)
        srv.out_fd = None
        await ws.send("poke")  # finds the reader gone
        await asyncio.sleep(0.1)
        fd = srv.open_out()
        await ws.send("three")
        check(await read_strict(fd) == (cid, 1, b"three"), "third reader starts at a boundary")
        await ws.close()
        check(await read_strict(fd) == (cid, 8, b""), "close notification")


@test
async def std_stdin_and_stdout():
    with Server("--std", stdin=True, stdout=True) as srv:
        ws = await open_client(srv)
        await asyncio.sleep(0.05)
        srv.proc.stdin.write(b"from stdin")
        srv.proc.stdin.flush()
        check(await recv(ws) == "from stdin", "stdin -> client")
        # The FIFO still works beside stdin (gwsocket: stdin/stdout "as well").
        srv.write_in(b"from fifo")
        check(await recv(ws) == "from fifo", "fifo -> client")
        await ws.send("to stdout")
        os.set_blocking(srv.proc.stdout.fileno(), False)
        got = await read_exact(srv.proc.stdout.fileno(), 9)
        check(got == b"to stdout", f"client -> stdout: {got!r}")
        # End of stdin is not the end of the server.
        srv.proc.stdin.close()
        await asyncio.sleep(0.1)
        srv.write_in(b"still here")
        check(await recv(ws) == "still here", "after stdin closed")
        await ws.close()


@test
async def std_stdin_strict():
    with Server("--stdin", "--strict", stdin=True) as srv:
        fd = srv.open_out()
        ws, cid, _ = await open_client(srv, fd)
        srv.proc.stdin.write(hdr(cid, 1, 5) + b"hello")
        srv.proc.stdin.flush()
        check(await recv(ws) == "hello", "strict message on stdin")
        await ws.close()


# --------------------------------------------------------------------------------------
# Strict mode


@test
async def strict_open_unicast_broadcast_close():
    with Server("--strict") as srv:
        fd = srv.open_out()
        a, ida, addr = await open_client(srv, fd)
        check(addr == b"127.0.0.1".ljust(ADDR_PAD, b"\0"), f"open payload {addr!r}")
        b, idb, _ = await open_client(srv, fd)
        check(ida != 0 and idb != 0 and ida != idb, f"ids {ida} {idb}")
        # Unicast.
        srv.write_in(hdr(ida, 1, 4) + b"to a")
        check(await recv(a) == "to a", "unicast to a")
        check(await recv_none(b) is None, "b got a's message")
        srv.write_in(hdr(idb, 2, 3) + b"\x00\x01\x02")
        check(await recv(b) == b"\x00\x01\x02", "binary unicast to b")
        check(await recv_none(a) is None, "a got b's message")
        # Broadcast (id 0).
        srv.write_in(hdr(0, 1, 3) + b"all")
        check(await recv(a) == "all" and await recv(b) == "all", "broadcast")
        # An id nobody has: dropped quietly.
        srv.write_in(hdr(999999, 1, 2) + b"no")
        srv.write_in(hdr(ida, 1, 5) + b"after")
        check(await recv(a) == "after", "message after an unknown id")
        # Client -> pipe, with the sender's id and type.
        await a.send("hi")
        check(await read_strict(fd) == (ida, 1, b"hi"), "text from a")
        await b.send(b"\xffbin")
        check(await read_strict(fd) == (idb, 2, b"\xffbin"), "binary from b")
        await a.send("")
        check(await read_strict(fd) == (ida, 1, b""), "empty message from a")
        # Close notification.
        await a.close()
        check(await read_strict(fd) == (ida, 8, b""), "close of a")
        await b.close()
        check(await read_strict(fd) == (idb, 8, b""), "close of b")
        check(await read_available(fd, 0.2) == b"", "unexpected pipe bytes")


@test
async def strict_malformed_header_then_good_one():
    with Server("--strict") as srv:
        fd = srv.open_out()
        ws, cid, _ = await open_client(srv, fd)
        # A bad type, no payload, then a good message in the same write.
        srv.write_in(hdr(cid, 7, 0) + hdr(cid, 1, 4) + b"good")
        check(await recv(ws) == "good", "good message after a bad type")
        srv.wait_log(r"bad message type 0x7")
        # A bad type with a payload of its own, then a good one.
        srv.write_in(hdr(0, 0x33, 5) + b"junk!" + hdr(0, 1, 5) + b"good2")
        check(await recv(ws) == "good2", "good message after a bad header with a payload")
        srv.wait_log(r"resynchronised after skipping 5 byte")
        # A length over the limit (1 MiB by default), no payload, then a good one.
        srv.write_in(hdr(cid, 1, (1 << 20) + 1) + hdr(cid, 1, 5) + b"good3")
        check(await recv(ws) == "good3", "good message after an oversized length")
        srv.wait_log(r"over the frame limit")
        # Garbage (plain text into a strict pipe), then a good message.
        srv.write_in(b"this is not a header at all\n" + hdr(cid, 1, 5) + b"good4")
        check(await recv(ws) == "good4", "good message after garbage")
        check(await recv_none(ws) is None, "something else was delivered")
        await ws.close()


@test
async def strict_partial_writes_reassembled():
    with Server("--strict") as srv:
        fd = srv.open_out()
        ws, cid, _ = await open_client(srv, fd)
        msg = hdr(cid, 1, 11) + b"hello world"
        for piece in (msg[:3], msg[3:9], msg[9:14], msg[14:]):
            srv.write_in(piece)
            await asyncio.sleep(0.05)
        check(await recv(ws) == "hello world", "reassembled message")
        # Two messages and a half in one write, the rest later.
        two = hdr(cid, 1, 3) + b"one" + hdr(cid, 1, 3) + b"two" + hdr(cid, 2, 5) + b"th"
        srv.write_in(two)
        check(await recv(ws) == "one" and await recv(ws) == "two", "two whole messages")
        check(await recv_none(ws, 0.2) is None, "half a message was delivered")
        srv.write_in(b"ree")
        check(await recv(ws) == b"three", "the rest of the third")
        await ws.close()


@test
async def strict_large_message_up_to_the_limit():
    limit = 3_000_000
    with Server("--strict", f"--max-frame-size={limit}") as srv:
        fd = srv.open_out()
        ws, cid, _ = await open_client(srv, fd)
        big = os.urandom(limit)
        srv.write_in(hdr(cid, 2, limit) + big)
        check(await recv(ws, 10) == big, "a message of exactly the limit")
        text = ("€" * (limit // 3)).encode()
        srv.write_in(hdr(0, 1, len(text)) + text)
        check(await recv(ws, 10) == text.decode(), "a text message near the limit")
        # Client -> pipe at the limit too.
        await ws.send(big)
        check(await read_strict(fd, 10) == (cid, 2, big), "client message of the limit")
        # One byte over: the header is refused and the next message still passes.
        srv.write_in(hdr(cid, 2, limit + 1) + hdr(cid, 1, 2) + b"ok")
        check(await recv(ws) == "ok", "message after an oversized header")
        await ws.close()


@test
async def writer_closes_and_reopens():
    for mode in ((), ("--strict",)):
        with Server(*mode) as srv:
            strict = bool(mode)
            fd = srv.open_out() if strict else None
            got = await open_client(srv, fd)
            ws = got[0] if strict else got
            cid = got[1] if strict else 0
            for i in range(5):
                body = f"writer {i}".encode()
                srv.open_in()
                srv.write_in(hdr(cid, 1, len(body)) + body if strict else body)
                srv.close_in()
                check(await recv(ws) == body.decode(), f"{mode} writer {i}")
            if strict:
                # A writer that dies mid-message: its half is dropped, the next writer's
                # message is not glued to it.
                srv.open_in()
                srv.write_in(hdr(cid, 1, 100) + b"only part")
                srv.close_in()
                srv.wait_log(r"closed in the middle of a message")
                srv.open_in()
                srv.write_in(hdr(cid, 1, 5) + b"fresh")
                srv.close_in()
                check(await recv(ws) == "fresh", "message of the next writer")
            if not strict:
                # A shell-style writer: `printf ... > fifo` (a blocking open).
                subprocess.run(["sh", "-c", f"printf 'shell' > '{srv.pipein}'"], timeout=5)
                check(await recv(ws) == "shell", "shell writer")
            check(not any("holding the FIFO open" in line for line in srv.log), "fell back")
            await ws.close()


@test(timing=True)
async def no_cpu_burn_without_a_writer():
    with Server("--strict") as srv:
        ws = await open_client(srv)
        await asyncio.sleep(0.2)
        c0 = srv.cpu_seconds()
        await asyncio.sleep(2.0)
        idle1 = srv.cpu_seconds() - c0
        # A writer comes, writes, goes (end of file, reopen); then nobody again.
        srv.open_in()
        srv.write_in(hdr(0, 1, 2) + b"hi")
        srv.close_in()
        check(await recv(ws) == "hi", "message")
        await asyncio.sleep(0.2)
        c1 = srv.cpu_seconds()
        await asyncio.sleep(2.0)
        idle2 = srv.cpu_seconds() - c1
        check(idle1 <= 0.05 and idle2 <= 0.05, f"CPU while idle: {idle1:.3f} s, {idle2:.3f} s")
        await ws.close()


# --------------------------------------------------------------------------------------
# Options


@test
async def echo_mode():
    with Server("--echo-mode", "--strict") as srv:
        fd = srv.open_out()
        a = await open_client(srv)
        b = await open_client(srv)
        await a.send("echo me")
        check(await recv(a) == "echo me", "text echo")
        await a.send(b"\x00bin")
        check(await recv(a) == b"\x00bin", "binary echo")
        check(await recv_none(b) is None, "echo went to another client")
        await a.close()
        await b.close()
        # No open/close notifications and nothing piped out, as gwsocket.
        check(await read_available(fd, 0.3) == b"", "echo mode wrote to the output pipe")


@test
async def origin_refused_with_403():
    good = "https://good.example"
    with Server(f"--origin={good}", f"--access-log=/dev/null") as srv:
        ws = await connect(srv.url, origin=good, open_timeout=5)
        srv.write_in(b"welcome")
        check(await recv(ws) == "welcome", "allowed origin")
        await ws.close()
        ws = await connect(srv.url, origin="HTTPS://GOOD.EXAMPLE", open_timeout=5)
        await ws.close()
        for origin in ("https://evil.example", None):
            try:
                ws = await connect(srv.url, origin=origin, open_timeout=5)
                await ws.close()
                raise Failure(f"origin {origin} was let in")
            except InvalidStatus as e:
                check(e.response.status_code == 403, f"{origin}: status {e.response.status_code}")


@test
async def frame_limit_closes_with_1009():
    with Server("--max-frame-size=1000") as srv:
        fd = srv.open_out()
        ws = await open_client(srv)
        await ws.send("x" * 1000)
        check(await read_exact(fd, 1000) == b"x" * 1000, "a message at the limit")
        await ws.send("y" * 1001)
        try:
            await recv(ws, 5)
            raise Failure("no close")
        except ConnectionClosed as e:
            check(e.rcvd is not None and e.rcvd.code == 1009, f"close {e.rcvd}")
        check(await read_available(fd, 0.2) == b"", "the oversized message was piped")


CLF = re.compile(
    r'^(?P<ip>\S+) - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] '
    r'"(?P<req>(?:[^"\\]|\\.)*)" (?P<status>\d{3}) (?P<bytes>-|\d+) '
    r'"(?P<ref>(?:[^"\\]|\\.)*)" "(?P<ua>(?:[^"\\]|\\.)*)"$')


@test
async def access_log_common_log_format():
    with tempfile.TemporaryDirectory(prefix="wspipe-test-") as d:
        log = os.path.join(d, "access.log")
        with Server(f"--access-log={log}", "--origin=http://ok.example") as srv:
            ws = await connect(srv.url + "/live?x=1", origin="http://ok.example",
                               user_agent_header="wspipe-test/1.0 (\"quoted\")",
                               additional_headers={"Referer": "http://ok.example/page"},
                               open_timeout=5)
            await ws.close()
            try:
                await connect(srv.url + "/", origin="http://bad.example", open_timeout=5)
            except InvalidStatus:
                pass
            # Not a WebSocket handshake at all.
            with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
                s.sendall(b"GET /plain HTTP/1.1\r\nHost: x\r\nOrigin: http://ok.example\r\n\r\n")
                reply = s.recv(100)
            check(reply.startswith(b"HTTP/1.1 400"), f"plain GET: {reply!r}")
            # A handshake of another WebSocket version.
            with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
                s.sendall(b"GET /v8 HTTP/1.1\r\nHost: x\r\nOrigin: http://ok.example\r\n"
                          b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                          b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          b"Sec-WebSocket-Version: 8\r\n\r\n")
                reply = s.recv(100)
            check(reply.startswith(b"HTTP/1.1 426"), f"version 8: {reply!r}")
            await asyncio.sleep(0.2)
        with open(log) as f:
            lines = f.read().splitlines()
        check(len(lines) == 4, f"{len(lines)} lines: {lines}")
        m = [CLF.match(line) for line in lines]
        check(all(m), f"not in Common/Combined Log Format: {lines}")
        check(m[0]["ip"] == "127.0.0.1" and m[0]["req"] == "GET /live?x=1 HTTP/1.1"
              and m[0]["status"] == "101" and m[0]["ref"] == "http://ok.example/page"
              and m[0]["ua"] == 'wspipe-test/1.0 (\\"quoted\\")', lines[0])
        check(m[1]["status"] == "403" and m[1]["req"] == "GET / HTTP/1.1", lines[1])
        check(m[2]["status"] == "400" and m[2]["req"] == "GET /plain HTTP/1.1", lines[2])
        check(m[3]["status"] == "426" and m[3]["req"] == "GET /v8 HTTP/1.1", lines[3])


@test
async def tls_serves_wss():
    with tempfile.TemporaryDirectory(prefix="wspipe-test-") as d:
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                            "-subj", "/CN=localhost", "-addext",
                            "subjectAltName=DNS:localhost,IP:127.0.0.1",
                            "-keyout", key, "-out", cert], capture_output=True, timeout=30)
        check(r.returncode == 0, f"openssl: {r.stderr[-300:]!r}")
        with Server(f"--ssl-cert={cert}", f"--ssl-key={key}", "--strict") as srv:
            check("listening on wss://" in srv.wait_log("listening on"), "not wss://")
            ctx = ssl.create_default_context(cafile=cert)
            fd = srv.open_out()
            ws = await connect(f"wss://127.0.0.1:{srv.port}/", ssl=ctx, open_timeout=5)
            cid, typ, _ = await read_strict(fd)
            check(typ == 0x10, "open notification")
            srv.write_in(hdr(cid, 1, 6) + b"secure")
            check(await recv(ws) == "secure", "message over wss://")
            await ws.send("back")
            check(await read_strict(fd) == (cid, 1, b"back"), "client message over wss://")
            await ws.close()
            # A plain ws:// client gets nowhere.
            plain_ok = False
            try:
                ws = await connect(srv.url, open_timeout=3)
                plain_ok = True
                await ws.close()
            except Exception:  # noqa: BLE001 - any refusal will do
                pass
            check(not plain_ok, "plain ws:// accepted on the TLS port")
        r = run_cli("--addr=127.0.0.1", f"--port={free_port()}", f"--pipein={d}/i",
                    f"--pipeout={d}/o", f"--ssl-cert={d}/missing.pem", f"--ssl-key={key}")
        check(r.returncode == 1 and b"cannot listen" in r.stderr, f"bad certificate: {r}")


@test
async def sigterm_and_sigint_close_clients_with_1001():
    for sig in (signal.SIGTERM, signal.SIGINT):
        with Server("--strict") as srv:
            fd = srv.open_out()
            clients = [(await open_client(srv, fd))[0] for _ in range(3)]
            t0 = time.monotonic()
            srv.proc.send_signal(sig)
            for ws in clients:
                try:
                    await recv(ws, 5)
                    raise Failure("a message instead of the close")
                except ConnectionClosed as e:
                    check(e.rcvd is not None and e.rcvd.code == 1001, f"{sig!r}: close {e.rcvd}")
            rc = srv.wait_exit(5)
            check(rc == 0, f"{sig!r}: exit status {rc}")
            check(time.monotonic() - t0 < 4, "slow shutdown")
            # The close notifications reached the pipe before the exit.
            closes = []
            for _ in clients:
                closes.append(await read_strict(fd, 2))
            check(all(t == 8 for _, t, _ in closes), f"close notifications {closes}")


@test
async def shutdown_is_bounded_when_a_client_never_answers():
    with Server("--strict") as srv:
        fd = srv.open_out()
        # A client that completes the handshake, then reads nothing and answers nothing.
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  b"Sec-WebSocket-Version: 13\r\n\r\n")
        check(s.recv(12) == b"HTTP/1.1 101", "handshake")
        cid, typ, _ = await read_strict(fd)
        check(typ == 0x10, "open notification")
        ws, cid2, _ = await open_client(srv, fd)
        t0 = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        try:
            await recv(ws, 5)
        except ConnectionClosed as e:
            check(e.rcvd is not None and e.rcvd.code == 1001, f"close {e.rcvd}")
        rc = srv.wait_exit(8)
        elapsed = time.monotonic() - t0
        check(rc == 0, f"exit status {rc}")
        check(2.5 < elapsed < 6 * SLOW, f"exit after {elapsed:.1f} s (the wait is 3 s)")
        closes = {await read_strict(fd, 2), await read_strict(fd, 2)}
        check(closes == {(cid, 8, b""), (cid2, 8, b"")}, f"close notifications {closes}")
        s.close()


async def main():
    global BIN, WRAP, SLOW
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=BIN)
    ap.add_argument("-k", default="")
    ap.add_argument("--valgrind", action="store_true",
                    help="run the program under valgrind memcheck (errors: exit status 99)")
    args = ap.parse_args()
    BIN = args.bin
    if args.valgrind:
        # ring's AES-GCM assembly gives false positives (uninitialised values): the
        # project's suppressions for them, as the Lua valgrind suite uses.
        root = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                             "..", ".."))
        supp = os.path.join(root, "build", "valgrind-ring.supp")
        os.makedirs(os.path.dirname(supp), exist_ok=True)
        with open(supp, "w") as f:
            subprocess.run([os.path.join(root, "scripts", "valgrind-supp.sh")], stdout=f,
                           check=True)
        WRAP = ["valgrind", "-q", "--error-exitcode=99", "--leak-check=full",
                "--errors-for-leak-kinds=definite", "--show-leak-kinds=definite",
                f"--suppressions={supp}"]
        SLOW = 6.0
    passed = failed = 0
    for fn in TESTS:
        if args.k and args.k not in fn.__name__:
            continue
        if args.valgrind and fn.timing:
            continue
        t0 = time.monotonic()
        try:
            await asyncio.wait_for(fn(), 60 * SLOW)
            detail = None
        except Exception as e:  # noqa: BLE001 - every failure is reported the same way
            detail = str(e) if isinstance(e, Failure) else traceback.format_exc()
        left = reap()
        if left:
            detail = (detail + "; " if detail else "") + f"left running (killed): {left}"
        if detail is None:
            passed += 1
            print(f"ok   {fn.__name__} ({time.monotonic() - t0:.1f} s)", flush=True)
        else:
            failed += 1
            print(f"FAIL {fn.__name__}: {detail}", flush=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    # Killed by the caller's timeout: unwind (the running test's `with Server` exits),
    # then end whatever is still running.
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        sys.exit(asyncio.run(main()))
    finally:
        reap()
