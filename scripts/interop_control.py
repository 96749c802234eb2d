#!/usr/bin/env python3
"""Interop checks of Glassbox's device control plane with a paho-mqtt 2.x device.

Called by scripts/interop.sh, which drives the operator's side with the
glassbox CLI (`control desired`, `control send`, `devices shadow`, ...) and
runs this script as the device in between; it can also be run by hand:

    python3 scripts/interop_control.py HOST PORT DEVICE_ID DEVICE_SECRET VERSION ACTION [ARGS...]

VERSION is the MQTT version of the device: 3.1.1 or 5.0. The device connects
with client id = user name = DEVICE_ID, password = DEVICE_SECRET, does what
ACTION says and disconnects cleanly. ACTION is one of:

  shadow-sync DELTA_JSON
      subscribes to $glassbox/devices/ID/shadow/#; expects the pending delta
      there with state == DELTA_JSON; reports DELTA_JSON as its reported state
      and expects shadow/update/accepted with the next version and its
      clientToken; then asks shadow/get and expects get/accepted with no delta.
  command COMMAND_ID NAME PAYLOAD_JSON STATUS RESULT_JSON
      subscribes at QoS 1 to $glassbox/devices/ID/commands/#; expects the
      command COMMAND_ID ("-": whichever comes) named NAME with PAYLOAD_JSON on
      .../commands/NAME (5.0: with the response topic and correlation data
      properties); answers {"id", "status": STATUS, "result": RESULT_JSON,
      "message"} on .../commands/NAME/response (5.0: on the response topic
      property, with the correlation data and a correlationid user property)
      and waits for the PUBACK.
  command-by-correlation NAME PAYLOAD_JSON STATUS RESULT_JSON
      5.0 only: like `command -`, but the answer names the command only by the
      correlation data property (no "id" in it): the spec's request/response.
  answer COMMAND_ID NAME STATUS
      publishes one answer to command COMMAND_ID, subscribing to nothing, and
      waits for its PUBACK (to answer a command that has finished already).

Prints one `ok - ...` / `not ok - ...` line and exits 1 if the check failed.
Every wait has a timeout.
"""

import json
import queue
import sys
import time

# The paho client wrapper shared with the gateway checks (same directory); it
# says how to install paho-mqtt if it is missing, so it comes first (and leaves
# no __pycache__ in the source tree).
sys.dont_write_bytecode = True
from interop_paho import TIMEOUT, CheckFailed, Client, compact, mqtt  # noqa: E402

from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

PROTOCOLS = {"3.1.1": mqtt.MQTTv311, "5.0": mqtt.MQTTv5}


class Device:
    """The device: one paho connection, and the messages it got."""

    def __init__(self, host, port, device, secret, version):
        self.device, self.version = device, version
        self.v5 = PROTOCOLS[version] == mqtt.MQTTv5
        self.base = "$glassbox/devices/%s" % device
        self.client = Client(device, device, secret, PROTOCOLS[version])
        self.host, self.port = host, port
        self.seen = []  # every message received, for the failure messages

    def connect(self):
        self.client.connect_ok(self.host, self.port)

    def expect(self, what, pred):
        """The first message received that matches pred (others are skipped)."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CheckFailed(
                    "no %s within %.0fs; received: %s"
                    % (what, TIMEOUT, compact([[m.topic, m.payload.decode(errors="replace")] for m in self.seen]))
                )
            try:
                msg = self.client.messages.get(timeout=left)
            except queue.Empty:
                continue
            self.seen.append(msg)
            if pred(msg):
                return msg

    def expect_json(self, topic):
        msg = self.expect("message on %s" % topic, lambda m: m.topic == topic)
        try:
            return msg, json.loads(msg.payload)
        except ValueError:
            raise CheckFailed("%s: not JSON: %r" % (topic, msg.payload)) from None

    def close(self):
        self.client.disconnect()


def shadow_sync(dev, delta_json):
    want = json.loads(delta_json)
    dev.client.subscribe(dev.base + "/shadow/#", 1)
    _, delta = dev.expect_json(dev.base + "/shadow/delta")
    if delta.get("state") != want:
        raise CheckFailed(
            "delta state %s, expected %s (the delta: %s)" % (compact(delta.get("state")), compact(want), compact(delta))
        )
    version = delta.get("version")
    if not isinstance(version, int):
        raise CheckFailed("the delta has no version: %s" % compact(delta))

    token = "paho-%s-%s" % (dev.version, dev.device)
    update = {"state": {"reported": want}, "clientToken": token}
    dev.client.publish(dev.base + "/shadow/update", json.dumps(update), qos=1)
    _, accepted = dev.expect_json(dev.base + "/shadow/update/accepted")
    if accepted.get("version") != version + 1 or accepted.get("clientToken") != token:
        raise CheckFailed(
            "update/accepted %s, expected version %d and clientToken %s" % (compact(accepted), version + 1, token)
        )
    if (accepted.get("state") or {}).get("reported") != want:
        raise CheckFailed(
            "update/accepted state %s, expected reported %s" % (compact(accepted.get("state")), compact(want))
        )
    rejected = [m for m in dev.seen if m.topic.endswith("/rejected")]
    if rejected:
        raise CheckFailed("also got %s %s" % (rejected[0].topic, rejected[0].payload))

    dev.client.publish(dev.base + "/shadow/get", b"", qos=1)
    _, shadow = dev.expect_json(dev.base + "/shadow/get/accepted")
    if shadow.get("delta") != {} or shadow.get("reported") != want or shadow.get("version") != version + 1:
        raise CheckFailed(
            "get/accepted %s: expected version %d, reported %s, no delta" % (compact(shadow), version + 1, compact(want))
        )
    return ("gets its pending delta %s on subscribing to %s/shadow/#, reports it: update/accepted"
            " (version %d, its clientToken); shadow/get: no delta" % (compact(want), dev.base, version + 1))


def is_command(dev, name, command_id):
    """A message on .../commands/<name> with the id command_id ("-": any)."""
    topic = "%s/commands/%s" % (dev.base, name)

    def pred(m):
        if m.topic != topic:
            return False
        if command_id == "-":
            return True
        try:
            return json.loads(m.payload).get("id") == command_id
        except (ValueError, AttributeError):
            return True  # not JSON: it fails the checks below

    return pred


def receive_command(dev, command_id, name, payload_json):
    """Subscribes, receives the command and checks it; its envelope and message."""
    dev.client.subscribe(dev.base + "/commands/#", 1)
    # Another pending command (of an earlier, failed check) may come first: skipped.
    what = "command on %s/commands/%s" % (dev.base, name) if command_id == "-" else "command %s" % command_id
    msg = dev.expect(what, is_command(dev, name, command_id))
    try:
        env = json.loads(msg.payload)
    except ValueError:
        raise CheckFailed("command message on %s is not JSON: %r" % (msg.topic, msg.payload)) from None
    topic = "%s/commands/%s" % (dev.base, name)
    response_topic = topic + "/response"
    problems = []
    if msg.qos != 1:
        problems.append("QoS %d, expected 1" % msg.qos)
    if not env.get("id"):
        problems.append("no id")
    if env.get("name") != name:
        problems.append("name %r, expected %r" % (env.get("name"), name))
    if env.get("payload") != json.loads(payload_json):
        problems.append("payload %s, expected %s" % (compact(env.get("payload")), payload_json))
    if env.get("response_topic") != response_topic:
        problems.append("response_topic %r, expected %r" % (env.get("response_topic"), response_topic))
    if not env.get("expires_at") or not env.get("correlationid"):
        problems.append("no expires_at or correlationid")
    if dev.v5:
        props = getattr(msg, "properties", None)
        got_topic = getattr(props, "ResponseTopic", None)
        got_corr = getattr(props, "CorrelationData", None)
        if got_topic != response_topic:
            problems.append("response topic property %r, expected %r" % (got_topic, response_topic))
        if got_corr != str(env.get("id")).encode():
            problems.append("correlation data property %r, expected the command id %r" % (got_corr, env.get("id")))
    if problems:
        raise CheckFailed("command received: %s; message: %s" % ("; ".join(problems), compact(env)))
    return msg, env


def send_answer(dev, topic, body, correlation=None, correlationid=None):
    props = None
    if dev.v5 and (correlation is not None or correlationid):
        props = Properties(PacketTypes.PUBLISH)
        if correlation is not None:
            props.CorrelationData = correlation
        if correlationid:
            props.UserProperty = [("correlationid", correlationid)]
    dev.client.publish(topic, json.dumps(body), qos=1, properties=props)


def answer_body(command_id, status, result_json):
    body = {"status": status, "result": json.loads(result_json)}
    if command_id is not None:
        body["id"] = command_id
    if status == "failed":
        body["message"] = "paho device says no"
    return body


def command(dev, command_id, name, payload_json, status, result_json):
    msg, env = receive_command(dev, command_id, name, payload_json)
    if dev.v5:
        # The spec's request/response: answer on the response topic property,
        # with its correlation data, and put the answer on the command's chain.
        send_answer(dev, msg.properties.ResponseTopic, answer_body(env["id"], status, result_json),
                    correlation=msg.properties.CorrelationData, correlationid=env["correlationid"])
        how = "response topic property, with correlation data"
    else:
        send_answer(dev, env["response_topic"], answer_body(env["id"], status, result_json))
        how = "response_topic"
    return "gets command %s %s %s (QoS 1%s), answers %s on its %s" % (
        name, env["id"], compact(env["payload"]), ", response topic + correlation data properties" if dev.v5 else "",
        status, how)


def command_by_correlation(dev, name, payload_json, status, result_json):
    if not dev.v5:
        raise CheckFailed("command-by-correlation needs MQTT 5.0")
    msg, env = receive_command(dev, "-", name, payload_json)
    send_answer(dev, msg.properties.ResponseTopic, answer_body(None, status, result_json),
                correlation=msg.properties.CorrelationData)
    return "gets command %s %s, answers %s on the response topic property, naming it only by correlation data" % (
        name, env["id"], status)


def answer(dev, command_id, name, status):
    topic = "%s/commands/%s/response" % (dev.base, name)
    send_answer(dev, topic, {"id": command_id, "status": status, "result": {"again": True}})
    return "answers command %s %s again on %s (PUBACKed)" % (name, command_id, topic)


ACTIONS = {
    "shadow-sync": (shadow_sync, 1),
    "command": (command, 5),
    "command-by-correlation": (command_by_correlation, 4),
    "answer": (answer, 3),
}


def main(argv):
    if len(argv) < 7 or argv[5] not in PROTOCOLS or argv[6] not in ACTIONS or len(argv) != 7 + ACTIONS[argv[6]][1]:
        print(__doc__, file=sys.stderr)
        return 2
    host, port, device, secret, version, action = argv[1], int(argv[2]), argv[3], argv[4], argv[5], argv[6]
    fn, _ = ACTIONS[action]
    name = "paho %s: device %s" % (version, device)
    dev = None
    try:
        dev = Device(host, port, device, secret, version)
        dev.connect()
        detail = fn(dev, *argv[7:])
        dev.close()
        dev = None
        print("ok - %s %s" % (name, detail), flush=True)
        return 0
    except Exception as e:  # a check's failure, or an unexpected error: both fail it
        print("not ok - %s %s: %s" % (name, action, e), flush=True)
        return 1
    finally:
        if dev is not None:
            dev.client.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
