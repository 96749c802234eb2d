"""{{name}}: a Glassbox function in Python (componentize-py, world
glassbox:function/event-handler in ./wit). Logs each JSON message it gets
and returns a `{{name}}.seen` event about it; see docs/functions.md for the
host interfaces (log, events, kv, devices).
"""

import json
from typing import List

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import log
from wit_world.imports.types import Event, Output


class Handler(exports.Handler):
    def handle(self, event: Event) -> List[Output]:
        """Returning a list succeeds (each output is recorded as an event
        caused by this one); raising Err fails the invocation and, after
        retries, dead-letters the event."""
        try:
            message = json.loads(event.data)
        except ValueError as e:
            raise Err(f"not JSON: {e}")
        device = event.device or "unknown"
        log.log(log.Level.INFO, f"{device} sent {json.dumps(message)}")
        seen = {"device": device, "bytes": len(event.data)}
        return [Output("{{name}}.seen", event.subject, "application/json", json.dumps(seen).encode())]
