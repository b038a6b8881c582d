#!/usr/bin/env python3
"""The authentication attacks of issue 11 (items 1, 2, 4, 12, 13, 15, 17), run against a
`sportsbook` binary on a fresh data directory; prints what each attack got.

    python3 docs/attacks/auth.py target/debug/sportsbook [serve flags...]

N_REG (150) concurrent registrations and N_GUESS (61) concurrent login guesses can be set in
the environment. Memory is read from /proc/<pid>/status (Linux). The tests that hold the
server to these results are `crates/gateway/tests/it/auth.rs` and
`crates/sportsbook/tests/it/auth.rs`; this script is for measuring, before and after."""
import http.client, json, os, subprocess, sys, tempfile, threading, time, collections

binary = sys.argv[1]
extra = sys.argv[2:]
data = tempfile.mkdtemp()
proc = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", data] + extra,
                        stdout=subprocess.PIPE, stderr=open(data + ".log", "w"), text=True)
address = None
for line in proc.stdout:
    if line.startswith("listening on http://"):
        address = line.strip().split("http://")[1]
        break
host, port = address.split(":")
threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()

def call(method, path, body=None, headers=None, token=None, content_type="application/json"):
    c = http.client.HTTPConnection(host, int(port), timeout=120)
    h = dict(headers or {})
    if token: h["Authorization"] = token if token.lower().startswith("bearer") else "Bearer " + token
    payload = None
    if body is not None:
        payload = json.dumps(body).encode()
        if content_type: h["Content-Type"] = content_type
    c.request(method, path, body=payload, headers=h)
    r = c.getresponse()
    text = r.read()
    try: value = json.loads(text) if text else None
    except Exception: value = text.decode(errors="replace")
    return r.status, r.getheader("Retry-After"), value

def mem():
    out = {}
    for line in open(f"/proc/{proc.pid}/status"):
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"): out[k] = int(v.split()[0]) // 1024
    return out

def concurrently(fns):
    results = [None] * len(fns)
    def run(i, f): results[i] = f()
    ts = [threading.Thread(target=run, args=(i, f)) for i, f in enumerate(fns)]
    for t in ts: t.start()
    for t in ts: t.join()
    return results

def summary(results):
    return dict(collections.Counter(f"{s}{'/'+b['error']['code'] if isinstance(b, dict) and 'error' in b else ''}{' RA='+ra if ra else ''}" for s, ra, b in results))

PW = "correct horse battery staple"
def reg(u, pw=PW): return call("POST", "/v1/auth/register", {"username": u, "password": pw, "date_of_birth": "1990-01-01", "country": "GB"})

print("== 1. memory: N concurrent registrations")
before = mem()
n = int(os.environ.get("N_REG", "150"))
t0 = time.time()
res = concurrently([lambda i=i: reg(f"flood{i}") for i in range(n)])
print(f"  {n} registrations in {time.time()-t0:.1f}s: {summary(res)}; memory MB before {before} after {mem()}")

print(f"== 2. {os.environ.get('N_GUESS', '61')} concurrent guesses, one of them right")
reg("target")
g = int(os.environ.get("N_GUESS", "61"))
res = concurrently([lambda i=i: call("POST", "/v1/auth/login", {"username": "target", "password": PW if i == g // 2 else f"wrong {i}"}) for i in range(g)])
print("  ", summary(res))

print("== 4. 30 spellings of one token x 20 requests")
reg("spell")
s, _, tok = call("POST", "/v1/auth/login", {"username": "spell", "password": PW})
tok = tok["access_token"]
res = concurrently([lambda k=k: [call("GET", "/v1/wallet", token="Bearer" + " " * (k + 1) + tok) for _ in range(20)] for k in range(30)])
flat = [x for r in res for x in r]
print("  ", {k: v for k, v in collections.Counter(x[0] for x in flat).items()})

print("== 12. passwords")
for pw in ["password1", "ééééééé", "12345678", "qwertyuiop"]:
    s, _, b = reg("pw" + str(abs(hash(pw)) % 10000), pw)
    print(f"   {pw!r}: {s} {b['error']['code'] if isinstance(b, dict) and 'error' in b else ''}")

print("== 13. logout then the old access token")
reg("leaver")
s, _, t = call("POST", "/v1/auth/login", {"username": "leaver", "password": PW})
print("   wallet before logout:", call("GET", "/v1/wallet", token=t["access_token"])[0])
print("   logout:", call("POST", "/v1/auth/logout", {"refresh_token": t["refresh_token"]})[0])
print("   wallet after logout:", call("GET", "/v1/wallet", token=t["access_token"])[0])

print("== 15. lockout of an account that did not fail, from the same address")
reg("victim"); reg("bystander")
for i in range(5):
    call("POST", "/v1/auth/login", {"username": "victim", "password": f"guess{i}"})
print("   bystander login after 5 failures on victim from the same address:", call("POST", "/v1/auth/login", {"username": "bystander", "password": PW})[0])
print("   victim (right password):", call("POST", "/v1/auth/login", {"username": "victim", "password": PW})[0])
res = [call("POST", "/v1/auth/login", {"username": f"ghost{i}", "password": PW}, headers={"X-Forwarded-For": f"203.0.113.{i}"})[0] for i in range(8)]
print("   unknown usernames with a spoofed X-Forwarded-For per request (not a trusted proxy):", res)

print("== 17. deposit with Content-Type: text/plain")
s, _, b = call("POST", "/v1/wallet/deposits", {"amount": "10.00", "payment_ref": "ct"}, token=tok, content_type="text/plain", headers={"Idempotency-Key": "ct-1"})
print("  ", s, b["error"]["code"] if isinstance(b, dict) and "error" in b else b)
s, _, b = call("POST", "/v1/bets", {"type": "single", "legs": [], "stake": "1.00"}, token=tok, content_type=None, headers={"Idempotency-Key": "ct-2"})
print("   bet without Content-Type:", s, b["error"]["code"] if isinstance(b, dict) and "error" in b else b)
print("peak memory MB:", mem())
proc.terminate(); proc.wait()
