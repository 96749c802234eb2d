#!/usr/bin/env python3
"""A device for Glassbox, as firmware would be written: paho-mqtt 2.x.

It connects with its own identity (client id = user name = device id,
password = its secret; TLS with --cafile), keeps a persistent session, and:

- publishes telemetry every --interval seconds on devices/<id>/telemetry
  (QoS 1: Glassbox acknowledges once the message is on disk);
- applies desired state: every shadow delta is merged into its state
  (objects key by key, null removes) and reported back, so the delta empties;
- answers commands: `fan {"on": bool}`, `setpoint {"celsius": number}` and
  `ping` succeed and change what it reports; any other name fails with a
  reason. Each command is done once even if it is delivered twice (at least
  once delivery): it remembers the last 1000 command ids.

    pip install 'paho-mqtt>=2,<3'
    SECRET=$(glassbox devices create thermo-1 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
    python3 device.py --id thermo-1 --secret "$SECRET"
    glassbox control desired thermo-1 setpoint=19     # it applies and reports it
    glassbox control send thermo-1 fan --payload '{"on": true}' --wait

It prints one line per thing it does, and reconnects (1 s to 30 s apart)
when the connection drops, saying so. SIGTERM or Ctrl-C disconnects cleanly.
"""

import argparse
import collections
import json
import random
import signal
import ssl
import sys
import threading
import time

try:
    import paho.mqtt.client as mqtt
except ImportError:
    sys.exit("device.py needs paho-mqtt 2.x: pip install 'paho-mqtt>=2,<3'")

# Command ids remembered to do each command once: a bound, oldest forgotten first.
SEEN_MAX = 1000


def merge(state, delta):
    """Merges a shadow delta into state: objects key by key, null removes."""
    for key, value in delta.items():
        if value is None:
            state.pop(key, None)
        elif isinstance(value, dict) and isinstance(state.get(key), dict):
            merge(state[key], value)
        else:
            state[key] = value


class Device:
    def __init__(self, args):
        self.args = args
        self.id = args.id
        self.prefix = f"$glassbox/devices/{self.id}"
        self.state = {"fan": False, "setpoint": 21.0}
        self.lock = threading.Lock()
        self.seen = collections.OrderedDict()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=self.id, clean_session=False, protocol=mqtt.MQTTv311
        )
        self.client.username_pw_set(self.id, args.secret)
        if args.cafile:
            self.client.tls_set(ca_certs=args.cafile, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self.on_connect
        self.client.on_disconnect = self.on_disconnect
        self.client.on_message = self.on_message

    def say(self, line):
        print(f"{time.strftime('%H:%M:%S')} {self.id}: {line}", flush=True)

    def on_connect(self, client, _userdata, _flags, reason, _properties):
        if reason.is_failure:
            self.say(f"connection refused: {reason} (check the device id and secret: glassbox devices inspect {self.id})")
            return
        self.say(f"connected to {self.args.host}:{self.args.port}{' over TLS' if self.args.cafile else ''}")
        # The delta comes at once if one is pending; so do commands queued while away.
        client.subscribe([(f"{self.prefix}/shadow/delta", 1), (f"{self.prefix}/shadow/update/rejected", 1),
                          (f"{self.prefix}/commands/+", 1)])

    def on_disconnect(self, _client, _userdata, _flags, reason, _properties):
        if reason.value != 0:
            self.say(f"connection lost ({reason}); reconnecting")

    def on_message(self, _client, _userdata, message):
        try:
            body = json.loads(message.payload or b"{}")
        except ValueError:
            self.say(f"ignored a message on {message.topic} that is not JSON")
            return
        if message.topic.endswith("/shadow/delta"):
            self.apply_delta(body)
        elif message.topic.endswith("/shadow/update/rejected"):
            self.say(f"report refused: {body.get('code')} {body.get('message')}")
        elif "/commands/" in message.topic and not message.topic.endswith("/response"):
            self.answer(body)

    def apply_delta(self, delta):
        with self.lock:
            merge(self.state, delta.get("state", {}))
            reported = dict(self.state)
        self.say(f"desired state applied (shadow version {delta.get('version')}): {json.dumps(delta.get('state'))}")
        self.report(reported)

    def report(self, reported):
        update = {"state": {"reported": reported}}
        self.client.publish(f"{self.prefix}/shadow/update", json.dumps(update), qos=1)

    def answer(self, command):
        command_id, name, payload = command.get("id"), command.get("name"), command.get("payload") or {}
        if command_id in self.seen:
            self.say(f"command {name} {command_id} came again: done already, not done twice")
            return
        self.seen[command_id] = True
        while len(self.seen) > SEEN_MAX:
            self.seen.popitem(last=False)
        status, result, message = self.run(name, payload)
        response = {"id": command_id, "status": status}
        if result is not None:
            response["result"] = result
        if message:
            response["message"] = message
        topic = command.get("response_topic") or f"{self.prefix}/commands/{name}/response"
        self.client.publish(topic, json.dumps(response), qos=1)
        self.say(f"command {name} {json.dumps(payload)}: {status}{' (' + message + ')' if message else ''}")

    def run(self, name, payload):
        """Does a command: (status, result, message)."""
        with self.lock:
            if name == "fan" and isinstance(payload.get("on"), bool):
                self.state["fan"] = payload["on"]
            elif name == "setpoint" and isinstance(payload.get("celsius"), (int, float)):
                self.state["setpoint"] = float(payload["celsius"])
            elif name == "ping":
                return "succeeded", {"pong": True}, None
            elif name in ("fan", "setpoint"):
                return "failed", None, f"{name} wants " + ('{"on": true|false}' if name == "fan" else '{"celsius": N}')
            else:
                return "failed", None, f"unknown command {name!r}: this device knows fan, setpoint and ping"
            reported = dict(self.state)
        self.report(reported)
        return "succeeded", reported, None

    def telemetry(self):
        with self.lock:
            celsius = round(self.state["setpoint"] + random.uniform(-0.5, 0.5) - (1.0 if self.state["fan"] else 0.0), 2)
            reading = {"celsius": celsius, "fan": self.state["fan"]}
        self.client.publish(f"devices/{self.id}/telemetry", json.dumps(reading), qos=1)

    def run_forever(self, stop):
        self.client.connect_async(self.args.host, self.args.port, keepalive=30)
        self.client.loop_start()
        while not stop.wait(self.args.interval):
            if self.client.is_connected():
                self.telemetry()
        self.client.disconnect()
        self.client.loop_stop()
        self.say("disconnected")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--id", required=True, help="the device id (glassbox devices create ID)")
    parser.add_argument("--secret", required=True, help="its secret, printed once by devices create")
    parser.add_argument("--cafile", help="connect over TLS, trusting this CA certificate (PEM)")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between telemetry messages")
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    Device(args).run_forever(stop)


if __name__ == "__main__":
    main()
