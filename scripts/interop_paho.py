#!/usr/bin/env python3
"""Interop checks of Glassbox's MQTT gateway with paho-mqtt 2.x (Python).

Called by scripts/interop.sh against a running `glassbox serve`; it can also be
run by hand:

    python3 scripts/interop_paho.py HOST PORT DEVICE_ID DEVICE_SECRET OPERATOR_TOKEN [HTTP_URL]

HTTP_URL (the server's HTTP API, to look up recorded events) defaults to
$GLASSBOX_SERVER. DEVICE_ID must be a registered, enabled device.

For MQTT 3.1.1 and for MQTT 5.0 it checks:
  - the device connects with its credentials, subscribes to devices/ID/cmd,
    an operator client publishes there with QoS 1 and the device receives it;
  - a wrong secret is refused with "bad user name or password";
  - a clean DISCONNECT is recorded as device.disconnected, reason client_disconnect.
For MQTT 5.0 only:
  - a PUBLISH with user properties correlationid / traceparent is recorded
    with that correlationid and traceparent.

Prints one `ok - ...` / `not ok - ...` line per check and exits 1 if any failed.
Every wait has a timeout.
"""

import json
import os
import queue
import secrets
import sys
import threading
import time
import urllib.parse
import urllib.request

try:
    import paho.mqtt
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
except ImportError:
    print("not ok - paho-mqtt is not installed: run `pip install paho-mqtt`")
    sys.exit(1)

TIMEOUT = 10.0  # seconds, for every wait on the network or on the recorder

PROTOCOLS = [("3.1.1", mqtt.MQTTv311), ("5.0", mqtt.MQTTv5)]


class CheckFailed(Exception):
    pass


class Client:
    """A paho client on its own network thread, with waitable callbacks."""

    def __init__(self, client_id, username, password, protocol):
        self.protocol = protocol
        self.mqtt = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
        self.mqtt.username_pw_set(username, password)
        # Never retry a refused connection behind our back.
        self.mqtt.reconnect_delay_set(min_delay=60, max_delay=60)
        self.connack = queue.Queue()
        self.subacks = queue.Queue()
        self.messages = queue.Queue()
        self.disconnected = threading.Event()
        self.mqtt.on_connect = lambda c, u, flags, rc, props: self.connack.put(rc)
        self.mqtt.on_subscribe = lambda c, u, mid, rcs, props: self.subacks.put(rcs)
        self.mqtt.on_message = lambda c, u, msg: self.messages.put(msg)
        self.mqtt.on_disconnect = lambda c, u, flags, rc, props: self.disconnected.set()

    def connect(self, host, port):
        """Connects and returns the CONNACK reason code (a paho ReasonCode)."""
        self.mqtt.connect(host, port, keepalive=30)
        self.mqtt.loop_start()
        try:
            return self.connack.get(timeout=TIMEOUT)
        except queue.Empty:
            raise CheckFailed("no CONNACK within %.0fs" % TIMEOUT) from None

    def connect_ok(self, host, port):
        rc = self.connect(host, port)
        if rc.is_failure:
            raise CheckFailed("connection refused: %s (%d)" % (rc, rc.value))

    def subscribe(self, topic, qos):
        self.mqtt.subscribe(topic, qos)
        try:
            rcs = self.subacks.get(timeout=TIMEOUT)
        except queue.Empty:
            raise CheckFailed("no SUBACK for %s within %.0fs" % (topic, TIMEOUT)) from None
        if any(rc.is_failure for rc in rcs):
            raise CheckFailed("subscription to %s refused: %s" % (topic, rcs))

    def publish(self, topic, payload, qos, properties=None):
        info = self.mqtt.publish(topic, payload, qos=qos, properties=properties)
        info.wait_for_publish(timeout=TIMEOUT)
        if not info.is_published():
            raise CheckFailed("publish to %s not acknowledged within %.0fs" % (topic, TIMEOUT))

    def local_addr(self):
        """This connection's "host:port", as the gateway records it as `peer`."""
        host, port = self.mqtt.socket().getsockname()[:2]
        return "%s:%d" % (host, port)

    def disconnect(self):
        self.mqtt.disconnect()
        self.disconnected.wait(TIMEOUT)
        self.mqtt.loop_stop()

    def close(self):
        """Drops the client whatever its state (cleanup after a failure)."""
        try:
            self.mqtt.disconnect()
        except Exception:
            pass
        self.mqtt.loop_stop()


class Checks:
    def __init__(self, host, port, device, secret, token, http):
        self.host, self.port = host, port
        self.device, self.secret, self.token = device, secret, token
        self.http = http.rstrip("/")
        self.failed = 0

    def run(self, name, fn, *args):
        clients = []
        try:
            fn(clients, *args)
            print("ok - %s" % name, flush=True)
        except Exception as e:  # a check's failure, or an unexpected error: both fail it
            self.failed += 1
            print("not ok - %s: %s" % (name, e), flush=True)
        finally:
            for c in clients:
                c.close()

    def client(self, clients, client_id, username, password, protocol):
        c = Client(client_id, username, password, protocol)
        clients.append(c)
        return c

    def events(self, **filters):
        """GET /api/v1/events with these filters; the list of events."""
        url = "%s/api/v1/events?%s" % (self.http, urllib.parse.urlencode(filters))
        req = urllib.request.Request(url, headers={"Authorization": "Bearer " + self.token})
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            return json.load(resp)["events"]

    def wait_event(self, what, pred, **filters):
        """Polls the recorder until an event matching pred is recorded."""
        deadline = time.monotonic() + TIMEOUT
        seen = []
        while time.monotonic() < deadline:
            seen = self.events(**filters)
            for e in seen:
                if pred(e):
                    return e
            time.sleep(0.2)
        raise CheckFailed("no %s recorded within %.0fs (query %s gave %s)" % (what, TIMEOUT, filters, compact(seen)))

    # --- the checks -------------------------------------------------------

    def command_to_device(self, clients, version, protocol):
        tag = version.replace(".", "")
        dev = self.client(clients, self.device, self.device, self.secret, protocol)
        dev.connect_ok(self.host, self.port)
        topic = "devices/%s/cmd" % self.device
        dev.subscribe(topic, 1)
        op = self.client(clients, "paho-operator-%s" % tag, "operator", self.token, protocol)
        op.connect_ok(self.host, self.port)
        payload = json.dumps({"cmd": "reboot", "via": "paho " + version}).encode()
        op.publish(topic, payload, qos=1)
        try:
            msg = dev.messages.get(timeout=TIMEOUT)
        except queue.Empty:
            raise CheckFailed("device received nothing on %s within %.0fs" % (topic, TIMEOUT)) from None
        if msg.topic != topic or msg.payload != payload:
            raise CheckFailed("device received %r on %s, expected %r on %s" % (msg.payload, msg.topic, payload, topic))
        if msg.qos != 1:
            raise CheckFailed("device received the command at QoS %d, expected 1" % msg.qos)

    def wrong_secret_refused(self, clients, version, protocol):
        dev = self.client(clients, self.device, self.device, self.secret + "x", protocol)
        rc = dev.connect(self.host, self.port)
        # paho maps the 3.1.1 return code 4 onto the 5.0 reason code 0x86.
        if rc.value != 0x86:
            raise CheckFailed("CONNACK %s (0x%02x), expected bad user name or password (0x86)" % (rc, rc.value))

    def correlation_honoured(self, clients):
        dev = self.client(clients, self.device, self.device, self.secret, mqtt.MQTTv5)
        dev.connect_ok(self.host, self.port)
        correlation = "paho-corr-" + secrets.token_hex(8)
        traceparent = "00-%s-%s-01" % (secrets.token_hex(16), secrets.token_hex(8))
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = [("correlationid", correlation), ("traceparent", traceparent)]
        topic = "devices/%s/corr" % self.device
        dev.publish(topic, json.dumps({"n": 1}), qos=1, properties=props)
        e = self.wait_event(
            "device.message with correlationid %s" % correlation,
            lambda e: e.get("type") == "device.message",
            correlation=correlation,
        )
        if e.get("correlationid") != correlation or e.get("subject") != topic:
            raise CheckFailed("recorded %s" % compact(e))
        if e.get("traceparent") != traceparent:
            raise CheckFailed("traceparent %r recorded, expected %r" % (e.get("traceparent"), traceparent))

    def clean_disconnect_recorded(self, clients, version, protocol):
        dev = self.client(clients, self.device, self.device, self.secret, protocol)
        dev.connect_ok(self.host, self.port)
        peer = dev.local_addr()
        dev.disconnect()
        e = self.wait_event(
            "device.disconnected for peer %s" % peer,
            lambda e: (e.get("data") or {}).get("peer") == peer,
            type="device.disconnected",
            device=self.device,
        )
        reason = (e.get("data") or {}).get("reason")
        if reason != "client_disconnect":
            raise CheckFailed("reason %r recorded, expected client_disconnect: %s" % (reason, compact(e)))


def compact(value):
    text = json.dumps(value, separators=(",", ":"))
    return text if len(text) <= 600 else text[:600] + "..."


def main(argv):
    if len(argv) not in (6, 7):
        print(__doc__, file=sys.stderr)
        return 2
    host, port, device, secret, token = argv[1], int(argv[2]), argv[3], argv[4], argv[5]
    http = argv[6] if len(argv) == 7 else os.environ.get("GLASSBOX_SERVER", "http://%s:7070" % host)
    checks = Checks(host, port, device, secret, token, http)
    print("# paho-mqtt %s" % paho.mqtt.__version__, flush=True)
    for version, protocol in PROTOCOLS:
        checks.run(
            "paho %s: operator publishes QoS 1 to devices/%s/cmd, the subscribed device receives it"
            % (version, device),
            checks.command_to_device, version, protocol,
        )
        checks.run(
            "paho %s: wrong secret refused (bad user name or password)" % version,
            checks.wrong_secret_refused, version, protocol,
        )
        checks.run(
            "paho %s: clean disconnect recorded as device.disconnected reason client_disconnect" % version,
            checks.clean_disconnect_recorded, version, protocol,
        )
    checks.run(
        "paho 5.0: user properties correlationid and traceparent recorded on the event",
        checks.correlation_honoured,
    )
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
