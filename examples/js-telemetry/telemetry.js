// A Glassbox function in JavaScript (componentize-js, world
// glassbox:function/event-handler in ../../wit).
//
// Device telemetry in ({"temperature": 31.5} on mqtt:devices/+/telemetry),
// a log line, and when it is too hot: a `telemetry.hot` event and a `fan`
// command to the device that sent it.

import { log } from 'glassbox:function/log@0.1.0';
import { emit } from 'glassbox:function/events@0.1.0';
import { sendCommand } from 'glassbox:function/devices@0.1.0';

const THRESHOLD = 30.0;
const decoder = new TextDecoder();
const encoder = new TextEncoder();

function handle(event) {
  let reading;
  try {
    reading = JSON.parse(decoder.decode(event.data));
  } catch (e) {
    // An error fails the invocation (and, after retries, dead-letters the event).
    throw `telemetry is not JSON: ${e}`;
  }
  const temperature = reading?.temperature;
  if (typeof temperature !== 'number') {
    throw 'telemetry has no numeric "temperature"';
  }
  const device = event.device ?? 'unknown';
  log('info', `${device}: ${temperature} °C (threshold ${THRESHOLD} °C)`);
  // Plain console output works too: the host captures it into the invocation's logs.
  console.log(`js-telemetry saw event ${event.id}`);
  if (temperature <= THRESHOLD) {
    return [];
  }
  const hot = { device, temperature, threshold: THRESHOLD };
  emit({
    type: 'telemetry.hot',
    subject: event.subject,
    datacontenttype: 'application/json',
    data: encoder.encode(JSON.stringify(hot)),
  });
  if (event.device) {
    // Returns the command's id; throws (failing the invocation) if refused.
    const id = sendCommand(event.device, 'fan', JSON.stringify({ on: true }), 300);
    log('warn', `${device} is hot: fan on (command ${id})`);
  }
  return [];
}

export const handler = { handle };
