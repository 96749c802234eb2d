// {{name}}: a Glassbox function in JavaScript (componentize-js, world
// glassbox:function/event-handler in ./wit). Logs each JSON message it gets
// and returns a `{{name}}.seen` event about it; see docs/functions.md for
// the host interfaces (log, events, kv, devices).

import { log } from 'glassbox:function/log@0.1.0';

const decoder = new TextDecoder();
const encoder = new TextEncoder();

// Returning a list succeeds (each output is recorded as an event caused by
// this one); throwing a string fails the invocation and, after retries,
// dead-letters the event.
function handle(event) {
  let message;
  try {
    message = JSON.parse(decoder.decode(event.data));
  } catch (e) {
    throw `not JSON: ${e}`;
  }
  const device = event.device ?? 'unknown';
  log('info', `${device} sent ${JSON.stringify(message)}`);
  const seen = { device, bytes: event.data.length };
  return [{
    type: '{{name}}.seen',
    subject: event.subject,
    datacontenttype: 'application/json',
    data: encoder.encode(JSON.stringify(seen)),
  }];
}

export const handler = { handle };
