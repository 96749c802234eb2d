"""A Glassbox function in Python (componentize-py, world
glassbox:function/event-handler in ../../wit).

Device telemetry in ({"temperature": 31.5} on mqtt:devices/+/telemetry), a
log line, and when it is too hot: a `telemetry.hot` event and a `fan`
command to the device that sent it.
"""

import json
from typing import List

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import devices, events, log
from wit_world.imports.types import Event, Output

THRESHOLD = 30.0


class Handler(exports.Handler):
    def handle(self, event: Event) -> List[Output]:
        try:
            reading = json.loads(event.data)
        except ValueError as e:
            # Err fails the invocation (and, after retries, dead-letters the event).
            raise Err(f"telemetry is not JSON: {e}")
        temperature = reading.get("temperature") if isinstance(reading, dict) else None
        if not isinstance(temperature, (int, float)) or isinstance(temperature, bool):
            raise Err('telemetry has no numeric "temperature"')
        device = event.device or "unknown"
        log.log(log.Level.INFO, f"{device}: {temperature:g} °C (threshold {THRESHOLD:g} °C)")
        # Plain print works too: the host captures stdout into the invocation's logs.
        print(f"python-telemetry saw event {event.id}")
        if temperature <= THRESHOLD:
            return []
        hot = {"device": device, "temperature": temperature, "threshold": THRESHOLD}
        events.emit(Output("telemetry.hot", event.subject, "application/json", json.dumps(hot).encode()))
        if event.device:
            # Returns the command's id; raises Err (failing the invocation) if refused.
            command = devices.send_command(event.device, "fan", json.dumps({"on": True}), 300)
            log.log(log.Level.WARN, f"{device} is hot: fan on (command {command})")
        return []
