#!/usr/bin/env python3
"""HTTP-triggered functions on a real server: request → recorded → invoked → recorded → answered.

Usage: scripts/bench-http-functions.py BINARY [REQUESTS]

Starts `BINARY serve` on 127.0.0.1:17070 (HTTP) and :11883 (MQTT) over a
fresh data directory, deploys examples/js-http/hello.wasm as function
`hello` on http:GET /hello, allowed to reach a small upstream HTTP server
this script runs on 127.0.0.1, then times REQUESTS (default 500) requests
over one keep-alive connection for each case:

  plain   GET /hello?name=bench
  fetch   GET /hello?fetch=http://127.0.0.1:<upstream>/  (one outbound request)

and REQUESTS requests from 4 connections at once for the plain case. It
prints, per case, requests/s and the client's p50/p90/p99 latency, and the
median of the functions' own wall time (`wall_us` of their invocation
records). Every request must answer 200 with the id of its event, or it
reports nothing. BENCHMARKS.md has the figures.
"""
import http.client, http.server, json, os, shutil, statistics, subprocess, sys, threading, time, urllib.request

BIN = sys.argv[1]
N = int(sys.argv[2]) if len(sys.argv) > 2 else 500
TOKEN = "gbx_measure_token_0123456789"
HOST, PORT, MQTT = "127.0.0.1", 17070, 11883
DATA = "/tmp/glassbox-bench-http-functions"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Upstream(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def call(method, path, body=None, ctype=None):
    req = urllib.request.Request(f"http://{HOST}:{PORT}{path}", data=body, method=method)
    req.add_header("Authorization", f"Bearer {TOKEN}")
    if ctype:
        req.add_header("Content-Type", ctype)
    with urllib.request.urlopen(req, timeout=300) as r:
        return json.loads(r.read() or b"null")


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def run(path, n):
    """n requests over one connection; returns latencies (s) and event ids."""
    conn = http.client.HTTPConnection(HOST, PORT, timeout=30)
    latencies, ids = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        latencies.append(time.perf_counter() - t0)
        if response.status != 200 or not response.getheader("x-glassbox-event-id"):
            sys.exit(f"{path}: answered {response.status}; no figures")
        ids.append(response.getheader("x-glassbox-event-id"))
    conn.close()
    return latencies, ids


def walls(ids):
    wanted, found = set(ids), []
    invocations = call("GET", "/api/v1/functions/hello/invocations?limit=1000")["invocations"]
    for i in invocations:
        if i["event_id"] in wanted:
            if i["outcome"] != "succeeded":
                sys.exit(f"an invocation did not succeed: {i['outcome']}; no figures")
            found.append(i["wall_us"])
    return found


def report(name, latencies, elapsed, wall):
    print(
        f"{name:<12} {len(latencies) / elapsed:8.0f} req/s   p50 {pct(latencies, 0.5) * 1000:6.2f} ms"
        f"   p90 {pct(latencies, 0.9) * 1000:6.2f} ms   p99 {pct(latencies, 0.99) * 1000:6.2f} ms"
        f"   function wall p50 {statistics.median(wall) / 1000:5.2f} ms ({len(wall)} records)"
    )


def main():
    upstream = http.server.ThreadingHTTPServer((HOST, 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    up = upstream.server_address[1]
    shutil.rmtree(DATA, ignore_errors=True)
    env = dict(os.environ, GLASSBOX_ADMIN_TOKEN=TOKEN)
    server = subprocess.Popen(
        [BIN, "serve", "--data-dir", DATA, "--http", f"{HOST}:{PORT}", "--mqtt", f"{HOST}:{MQTT}"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in server.stdout:
            if "glassbox ready" in line:
                break
        threading.Thread(target=lambda: [None for _ in server.stdout], daemon=True).start()
        with open(os.path.join(ROOT, "examples/js-http/hello.wasm"), "rb") as f:
            component = f.read()
        query = f"trigger=http:GET%20/hello&egress=http://127.0.0.1:{up}"
        call("POST", f"/api/v1/functions/hello?{query}", component, "application/wasm")
        run("/hello?name=warm", 20)  # the first, cold one and the connection, out of the figures

        for name, path in [("plain", "/hello?name=bench"), ("fetch", f"/hello?fetch=http://127.0.0.1:{up}/")]:
            t0 = time.perf_counter()
            latencies, ids = run(path, N)
            elapsed = time.perf_counter() - t0
            time.sleep(0.5)
            report(name, latencies, elapsed, walls(ids))

        results, threads = [], []
        t0 = time.perf_counter()
        for _ in range(4):
            t = threading.Thread(target=lambda: results.append(run("/hello?name=bench", N // 4)))
            t.start()
            threads.append(t)
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        time.sleep(0.5)
        latencies = [l for r in results for l in r[0]]
        ids = [i for r in results for i in r[1]]
        report("plain x4", latencies, elapsed, walls(ids))
    finally:
        server.terminate()
        server.wait()
        upstream.shutdown()


main()
