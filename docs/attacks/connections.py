#!/usr/bin/env python3
"""Issue 11, item 3: idle and half-sent connections against a running server.

    python3 docs/attacks/connections.py 127.0.0.1 PORT N [WAIT_SECONDS]

Opens N connections (every other one sends half a request head), then asks for
`GET /v1/events` with curl and reports whether it was answered, and how many of the N are
still open WAIT_SECONDS (default 12) later. Run the server with a low `ulimit -n` (e.g. 1024
and N = 1100) to see what happens out of file descriptors. The tests that hold the server to
it are in `crates/gateway/tests/it/connections.rs` and `crates/sportsbook/tests/it/connections.rs`."""
import socket, subprocess, sys, time, errno
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
socks = []
for i in range(n):
    s = socket.create_connection((host, port))
    if i % 2:
        s.send(b"GET /v1/events HTTP/1.1\r\nHost: x\r\n")  # half a head
    socks.append(s)
time.sleep(1)
t = time.time()
code = subprocess.run(["curl", "-s", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}", f"http://{host}:{port}/v1/events"], capture_output=True, text=True).stdout
print(f"GET /v1/events with {n} idle/half-sent connections open: status {code or 'none'} after {time.time()-t:.2f} s")
def still_open():
    count = 0
    for s in socks:
        s.setblocking(False)
        try:
            data = s.recv(65536)
            if data == b"": continue
            count += 1
        except BlockingIOError:
            count += 1
        except OSError:
            pass
    return count
wait = float(sys.argv[4]) if len(sys.argv) > 4 else 12
time.sleep(wait)
print(f"after {wait:.0f} s more: {still_open()} of {n} attack connections still open")
