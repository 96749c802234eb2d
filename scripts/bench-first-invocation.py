#!/usr/bin/env python3
"""Deploy → first invocation, and restart → first invocation, on a real server.

Usage: scripts/bench-first-invocation.py BINARY COMPONENT [nocache]

Starts `BINARY serve` on 127.0.0.1:17070 (HTTP) and :11883 (MQTT) over a
fresh data directory, deploys COMPONENT as function `js` on
mqtt:devices/+/telemetry, registers device s1, publishes {"temperature":
31.5} with mosquitto_pub, and prints the deploy time and the first
invocation's record (wall, instantiate); then restarts the server (removing
the compiled-code cache first with `nocache`) and does it again, and
redeploys the same component. BENCHMARKS.md has the figures.
"""
import json, os, shutil, subprocess, sys, time, urllib.request

BIN, COMPONENT = sys.argv[1], sys.argv[2]
TOKEN = "gbx_measure_token_0123456789"
HTTP, MQTT = "127.0.0.1:17070", 11883
DATA = "/tmp/glassbox-bench-first-invocation"

def call(method, path, body=None, ctype=None):
    req = urllib.request.Request(f"http://{HTTP}{path}", data=body, method=method)
    req.add_header("Authorization", f"Bearer {TOKEN}")
    if ctype: req.add_header("Content-Type", ctype)
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read() or b"null")

def start():
    env = dict(os.environ, GLASSBOX_ADMIN_TOKEN=TOKEN)
    t0 = time.monotonic()
    p = subprocess.Popen([BIN, "serve", "--data-dir", DATA, "--http", HTTP, "--mqtt", f"127.0.0.1:{MQTT}"],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in p.stdout:
        if "glassbox ready" in line: break
    return p, time.monotonic() - t0

def invocations():
    return call("GET", "/api/v1/functions/js/invocations")["invocations"]

def publish_and_wait(secret, n):
    t0 = time.monotonic()
    subprocess.run(["mosquitto_pub", "-p", str(MQTT), "-i", "s1", "-u", "s1", "-P", secret, "-t", "devices/s1/telemetry",
                    "-q", "1", "-m", '{"temperature": 31.5}'], check=True)
    while len(invocations()) < n: time.sleep(0.005)
    inv = max(invocations(), key=lambda i: i["start"])
    return time.monotonic() - t0, inv

shutil.rmtree(DATA, ignore_errors=True)
p, ready = start()
body = open(COMPONENT, "rb").read()
t0 = time.monotonic()
call("POST", "/api/v1/functions/js?trigger=mqtt:devices/%2B/telemetry", body)
deploy = time.monotonic() - t0
secret = call("POST", "/api/v1/devices", json.dumps({"id": "s1"}).encode(), "application/json")["secret"]
e2e, inv = publish_and_wait(secret, 1)
print(f"deploy {deploy*1000:.0f} ms; first invocation after deploy: wall {inv['wall_us']} us, instantiate {inv['instantiate_us']} us, cold={inv['cold']}, publish->recorded {e2e*1000:.0f} ms, outcome {inv['outcome']}")
p.terminate(); p.wait()
if len(sys.argv) > 3 and sys.argv[3] == "nocache":
    shutil.rmtree(DATA + "/functions/compiled")
p, ready = start()
e2e, inv = publish_and_wait(secret, 2)
print(f"restart to ready {ready*1000:.0f} ms; first invocation after restart: wall {inv['wall_us']} us, instantiate {inv['instantiate_us']} us, cold={inv['cold']}, publish->recorded {e2e*1000:.0f} ms")
t0 = time.monotonic()
call("POST", "/api/v1/functions/js?trigger=mqtt:devices/%2B/telemetry", body)
print(f"redeploy of the same component {(time.monotonic()-t0)*1000:.0f} ms")
p.terminate(); p.wait()
shutil.rmtree(DATA, ignore_errors=True)
