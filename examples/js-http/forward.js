// An event-triggered Glassbox function in JavaScript that makes an outbound
// HTTP request (componentize-js, world glassbox:function/event-handler in
// ../../wit, built with the `http` feature so `fetch` is wasi:http).
//
// Forwards an event to a webhook: the event's data is
// {"url": "<webhook>", "payload": {…}}; it POSTs the payload there and fails
// the invocation unless the webhook answers 2xx. Only hosts deployed with
// --egress are reachable; any other request is denied (and recorded).

import { log } from 'glassbox:function/log@0.1.0';

const decoder = new TextDecoder();

async function handle(event) {
  const { url, payload } = JSON.parse(decoder.decode(event.data));
  let response;
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(payload ?? null),
    });
  } catch (e) {
    throw `could not reach ${url}: ${e}`;
  }
  const text = await response.text();
  log('info', `${url} answered ${response.status} (${text.length} bytes)`);
  if (!response.ok) {
    throw `${url} answered ${response.status}`;
  }
  return [];
}

// componentize-js runs the event loop until an async export's promise settles.
export const handler = { handle };
