"""A real SMTP next hop for the tests: aiosmtpd, saving every message it accepts.

Usage: sink.py HOST PORT OUTDIR [--tls CERT KEY] [--require-tls] [--auth USER:PASS]
                                 [--auth-optional] [--refuse ADDR]... [--tempfail ADDR]... [--delay SECONDS]
                                 [--only ADDR]...
With --only, every other recipient is refused with 550 5.1.1 (a primary that knows its users).
Each accepted message becomes OUTDIR/<n>.json with mail_from, rcpt_tos, the ESMTP options
and the data. Prints READY once listening. Runs until killed.
"""
import argparse
import asyncio
import json
import os
import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

args = argparse.ArgumentParser()
args.add_argument("host")
args.add_argument("port", type=int)
args.add_argument("out")
args.add_argument("--tls", nargs=2)
args.add_argument("--require-tls", action="store_true")
args.add_argument("--auth")
# AUTH offered but not required: shows whether a client sends its credential unasked.
args.add_argument("--auth-optional", action="store_true")
args.add_argument("--refuse", action="append", default=[])
args.add_argument("--tempfail", action="append", default=[])
args.add_argument("--delay", type=float, default=0.0)
args.add_argument("--only", action="append", default=[])
opts = args.parse_args()
os.makedirs(opts.out, exist_ok=True)


class Sink:
    # A restarted sink (a next hop back from an outage) numbers on after what it kept.
    count = sum(1 for n in os.listdir(opts.out) if n.endswith(".json"))

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in opts.refuse:
            return "550 5.1.1 No such user here"
        if address.lower() in opts.tempfail:
            return "451 4.3.0 Try again later"
        if opts.only and address.lower() not in opts.only:
            return "550 5.1.1 User unknown"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.append(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        started = time.time()
        if opts.delay:
            await asyncio.sleep(opts.delay)
        Sink.count += 1
        record = {
            "mail_from": envelope.mail_from,
            "mail_options": envelope.mail_options,
            "rcpt_tos": envelope.rcpt_tos,
            "rcpt_options": envelope.rcpt_options,
            "tls": session.ssl is not None,
            "auth": session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None,
            "data": envelope.content.decode("utf-8", "replace"),
            "peer": list(session.peer)[:2],
            "started": started,
            "ended": time.time(),
        }
        tmp = os.path.join(opts.out, f".{Sink.count}.tmp")
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.rename(tmp, os.path.join(opts.out, f"{Sink.count:06d}.json"))
        return "250 2.0.0 Saved"


def authenticator(server, session, envelope, mechanism, auth_data):
    user, password = opts.auth.split(":", 1)
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login.decode() == user
        and auth_data.password.decode() == password
    )
    return AuthResult(success=ok, handled=False, auth_data=auth_data)


kwargs = {}
if opts.tls:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(opts.tls[0], opts.tls[1])
    kwargs["tls_context"] = ctx
    kwargs["require_starttls"] = opts.require_tls
if opts.auth:
    kwargs["authenticator"] = authenticator
    kwargs["auth_require_tls"] = bool(opts.tls)
    kwargs["auth_required"] = not opts.auth_optional
controller = Controller(
    Sink(), hostname=opts.host, port=opts.port, server_hostname="sink.test",
    decode_data=False, **kwargs
)
controller.start()
print("READY", flush=True)
try:
    while True:
        time.sleep(3600)
finally:
    controller.stop()
