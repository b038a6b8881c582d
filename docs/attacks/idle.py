#!/usr/bin/env python3
"""Issue 11, item 3: how long a server keeps an idle keep-alive connection open.

    python3 docs/attacks/idle.py 127.0.0.1 PORT [SECONDS]

Sends one request on a keep-alive connection, reads the answer, then waits (at most SECONDS,
default 85) for the server to close it. The test that holds the server to it is
`connections::an_idle_keep_alive_connection_is_closed_and_an_active_one_is_not`."""
import socket, sys, time

host, port = sys.argv[1], int(sys.argv[2])
limit = float(sys.argv[3]) if len(sys.argv) > 3 else 85
s = socket.create_connection((host, port))
s.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
time.sleep(0.3)
s.recv(65536)
s.setblocking(False)
start = time.time()
closed = None
while time.time() - start < limit and closed is None:
    try:
        if s.recv(1) == b"":
            closed = time.time() - start
    except BlockingIOError:
        pass
    except OSError:
        closed = time.time() - start
    time.sleep(0.5)
print(f"idle keep-alive connection " + (f"closed after {closed:.1f} s" if closed is not None else f"still open after {limit:.0f} s"))
