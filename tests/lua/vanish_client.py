"""A client that vanishes while the server is sending it a large reply.

    vanish_client.py PORT TLS(0|1) KIND(stream|big|ws) HOW(fin|close|rst|half)

Sends the request (for ws: the handshake, then the message "go"), then goes away:
"fin" closes at once, before any of the reply came (a FIN, nothing unread); the
others first wait for the first bytes of the reply, then leave without reading the
rest: "close" closes (unread data makes the kernel answer with a reset), "rst"
closes with SO_LINGER 0, "half" shuts down its sending side, waits 300 ms without
reading, then closes. Its receive buffer is small, so that the server has most of
the reply still to write. Prints "vanished".
"""
import base64
import os
import socket
import ssl
import struct
import sys
import time

port, tls, kind, how = int(sys.argv[1]), sys.argv[2] == "1", sys.argv[3], sys.argv[4]

s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.settimeout(5)
s.connect(("127.0.0.1", port))
if tls:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s = ctx.wrap_socket(s, server_hostname="localhost")

if kind == "ws":
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        data = s.recv(1024)
        if not data:
            sys.exit("no handshake reply")
        head += data
    assert head.startswith(b"HTTP/1.1 101"), head
    mask = os.urandom(4)
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(b"go"))
    s.sendall(bytes([0x81, 0x80 | 2]) + mask + payload)
else:
    s.sendall(("GET /%s HTTP/1.1\r\nHost: x\r\n\r\n" % kind).encode())

if how == "fin":
    s.close()
    print("vanished")
    sys.exit(0)

# The reply has started (for ws: a frame of the first message).
got = b""
while len(got) < 1:
    data = s.recv(1024)
    if not data:
        sys.exit("the server closed before replying")
    got += data

if how == "rst":
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
elif how == "close":
    s.close()
elif how == "half":
    s.shutdown(socket.SHUT_WR)
    time.sleep(0.3)
    s.close()
else:
    sys.exit("unknown HOW " + how)
print("vanished")
