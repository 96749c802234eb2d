#!/usr/bin/env python3
"""Renew a device's certificate over MQTT, as firmware would: paho-mqtt 2.x.

The device connects over TLS with its current certificate (no password),
makes a new key and a CSR whose common name is its id (with the
`cryptography` package, or the `openssl` binary when that is missing),
publishes {"csr": "<PEM>"} on $glassbox/devices/<id>/certificate/renew and
waits for the answer on .../renew/accepted ({"certificate", "serial",
"not_after"}) or .../renew/rejected ({"reason"}). On success it writes the
new key (0600) and certificate over the old ones, then connects once with
them: from that moment the old certificate no longer logs in (until then,
or until the server's ca.renewal_grace ends, it still does).

    pip install 'paho-mqtt>=2,<3'
    python3 renew.py --id th-1 --cafile ca.crt --cert th-1.crt --key th-1.key

Exit status 0 when renewed, 1 when refused (the reason on stderr), 2 when
no answer came within --timeout seconds.
"""

import argparse
import json
import os
import ssl
import subprocess
import sys
import tempfile
import threading

try:
    import paho.mqtt.client as mqtt
except ImportError:
    sys.exit("renew.py needs paho-mqtt 2.x: pip install 'paho-mqtt>=2,<3'")


def new_key_and_csr(device):
    """A new EC P-256 key and a CSR for `device`, both PEM."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        return openssl_key_and_csr(device)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return key_pem, csr.public_bytes(serialization.Encoding.PEM).decode()


def openssl_key_and_csr(device):
    with tempfile.TemporaryDirectory() as tmp:
        key, csr = os.path.join(tmp, "key.pem"), os.path.join(tmp, "req.csr")
        subprocess.run(
            ["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", key, "-subj", f"/CN={device}", "-out", csr],
            check=True, capture_output=True,
        )
        with open(key) as k, open(csr) as c:
            return k.read(), c.read()


def client(args, cert, key):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=args.id, protocol=mqtt.MQTTv311)
    c.tls_set(ca_certs=args.cafile, certfile=cert, keyfile=key, cert_reqs=ssl.CERT_REQUIRED)
    return c


def renew(args, csr):
    """Publishes the CSR and returns ("accepted", answer) or ("rejected", answer); None on timeout."""
    topic = f"$glassbox/devices/{args.id}/certificate/renew"
    answered, answer = threading.Event(), {}
    c = client(args, args.cert, args.key)

    def on_connect(c, userdata, flags, reason, properties):
        if reason.is_failure:
            answer.update(outcome="rejected", body={"reason": f"connect refused: {reason}"})
            answered.set()
            return
        c.subscribe(topic + "/+", qos=1)

    def on_subscribe(c, userdata, mid, reasons, properties):
        c.publish(topic, json.dumps({"csr": csr}), qos=1)

    def on_message(c, userdata, message):
        outcome = message.topic.rsplit("/", 1)[-1]
        answer.update(outcome=outcome, body=json.loads(message.payload))
        answered.set()

    c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
    c.connect(args.host, args.port, keepalive=30)
    c.loop_start()
    try:
        if not answered.wait(args.timeout):
            return None
        return answer["outcome"], answer["body"]
    finally:
        c.disconnect()
        c.loop_stop()


def replace(path, contents, mode):
    """Writes `contents` to `path` at once (a new file renamed over the old)."""
    tmp = f"{path}.new"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(contents)
    os.replace(tmp, path)


def first_connect(args):
    """Connects once with the new certificate: the server retires the old one."""
    connected = threading.Event()
    c = client(args, args.cert, args.key)
    c.on_connect = lambda c, u, f, reason, p: (not reason.is_failure) and connected.set()
    c.connect(args.host, args.port, keepalive=30)
    c.loop_start()
    ok = connected.wait(args.timeout)
    c.disconnect()
    c.loop_stop()
    return ok


def main():
    p = argparse.ArgumentParser(description="Renew a device certificate over MQTT (Glassbox)")
    p.add_argument("--id", required=True, help="the device id (the certificate's common name)")
    p.add_argument("--host", default="localhost")
    p.add_argument("--port", type=int, default=8883)
    p.add_argument("--cafile", required=True, help="the CA certificate: glassbox ca show > ca.crt")
    p.add_argument("--cert", required=True, help="the current certificate; replaced by the new one")
    p.add_argument("--key", required=True, help="the current key; replaced by the new one (0600)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each answer")
    args = p.parse_args()

    key, csr = new_key_and_csr(args.id)
    answer = renew(args, csr)
    if answer is None:
        print(f"no answer within {args.timeout} s", file=sys.stderr)
        return 2
    outcome, body = answer
    if outcome != "accepted":
        print(f"renewal refused: {body.get('reason')}", file=sys.stderr)
        return 1
    replace(args.key, key, 0o600)
    replace(args.cert, body["certificate"], 0o644)
    print(f"renewed: serial {body['serial']}, valid until {body['not_after']}; wrote {args.cert} and {args.key}")
    if not first_connect(args):
        print("warning: could not connect with the new certificate yet; the old one works until the grace period ends",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
