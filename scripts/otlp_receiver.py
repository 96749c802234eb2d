#!/usr/bin/env python3
"""A minimal OTLP/HTTP receiver for tests: decodes protobuf trace and log
export requests with the OpenTelemetry project's own message definitions
(pip package opentelemetry-proto) and appends what it received, one JSON
object per span or log record, to a file.

    python3 scripts/otlp_receiver.py PORT OUTFILE

Prints "listening on PORT" when ready. Answers 400 to a body that does not
decode, 415 to a content type other than application/x-protobuf.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

OUT = None


def any_value(value):
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def attributes(kvs):
    return {kv.key: any_value(kv.value) for kv in kvs}


def spans(request):
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield {
                    "signal": "span",
                    "service": resource.get("service.name"),
                    "scope": scope_spans.scope.name,
                    "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(),
                    "parent_span_id": span.parent_span_id.hex(),
                    "name": span.name,
                    "kind": span.kind,
                    "start_ns": span.start_time_unix_nano,
                    "end_ns": span.end_time_unix_nano,
                    "attributes": attributes(span.attributes),
                    "status": {"code": span.status.code, "message": span.status.message},
                }


def logs(request):
    for resource_logs in request.resource_logs:
        resource = attributes(resource_logs.resource.attributes)
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                yield {
                    "signal": "log",
                    "service": resource.get("service.name"),
                    "trace_id": record.trace_id.hex(),
                    "span_id": record.span_id.hex(),
                    "severity": record.severity_text,
                    "severity_number": record.severity_number,
                    "body": any_value(record.body),
                    "time_ns": record.time_unix_nano,
                    "attributes": attributes(record.attributes),
                }


ROUTES = {
    "/v1/traces": (trace_service_pb2.ExportTraceServiceRequest, trace_service_pb2.ExportTraceServiceResponse, spans),
    "/v1/logs": (logs_service_pb2.ExportLogsServiceRequest, logs_service_pb2.ExportLogsServiceResponse, logs),
}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        route = ROUTES.get(self.path)
        if route is None:
            return self.answer(404, b"unknown path")
        if self.headers.get("content-type", "").split(";")[0].strip() != "application/x-protobuf":
            return self.answer(415, b"expected application/x-protobuf")
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        request_type, response_type, items = route
        try:
            request = request_type.FromString(body)
        except DecodeError as e:
            return self.answer(400, str(e).encode())
        with open(OUT, "a") as out:
            for item in items(request):
                out.write(json.dumps(item) + "\n")
        self.answer(200, response_type().SerializeToString(), "application/x-protobuf")

    def answer(self, status, body, content_type="text/plain"):
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    global OUT
    port, OUT = int(sys.argv[1]), sys.argv[2]
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
