// An HTTP-triggered Glassbox function in JavaScript (componentize-js,
// world wasi:http/proxy in ./wit): the standard fetch-event handler, as a
// service worker would write it.
//
//   GET  /hello?name=Ada              → {"message": "hello, Ada"}
//   POST /hello (a body)              → … and "received": <bytes>
//   GET  /hello?fetch=<url>           → … and "upstream": {status, bytes}:
//                                       one outbound request, allowed only to
//                                       the hosts deployed with --egress
//
// A denied or failed outbound request answers 502 with the reason.

addEventListener('fetch', (event) => event.respondWith(handle(event.request)));

async function handle(request) {
  const url = new URL(request.url);
  // Printed lines go to the invocation's logs.
  console.log(`${request.method} ${url.pathname}`);
  const name = url.searchParams.get('name') ?? 'world';
  const answer = { message: `hello, ${name}` };
  if (request.method === 'POST') {
    answer.received = (await request.arrayBuffer()).byteLength;
  }
  const upstream = url.searchParams.get('fetch');
  if (upstream) {
    try {
      const response = await fetch(upstream);
      const body = await response.arrayBuffer();
      answer.upstream = { url: upstream, status: response.status, bytes: body.byteLength };
    } catch (e) {
      answer.upstream = { url: upstream, error: String(e) };
      return json(answer, 502);
    }
  }
  return json(answer, 200);
}

function json(value, status) {
  return new Response(JSON.stringify(value), {
    status,
    headers: { 'content-type': 'application/json' },
  });
}
