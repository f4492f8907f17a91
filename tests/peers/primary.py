"""A scripted shadow-redundancy primary for the shadow-side tests: a raw asyncio SMTP server that
speaks the Exchange 2010 wire format of reference §1.2 (EHLO keyword XSHADOW, `XSHADOW <context>`
answered `250 <dbid>`, MAIL ... XSHADOW=<id>, `XQDISCARD <n>` answered with `250-<id>` lines or
`251 OK, no discard events`) and can be told to misbehave.

Usage: primary.py HOST PORT OUTDIR [--name FQDN] [--dbid BASE64] [--no-xshadow]
                  [--xshadow-reply LINE] [--drop-on-xshadow] [--hold]
                  [--discard-reply normal|empty|long|foreign]
OUTDIR/log.txt gets one line per command received, `<session> <line>`; each accepted message
becomes OUTDIR/<time>-<n>.json (mail_from, mail_line, rcpt_tos, xshadow). With --hold, accepted ids are
returned by XQDISCARD only once OUTDIR/release exists. Prints READY once listening.
"""
import argparse
import asyncio
import base64
import itertools
import json
import os
import sys
import time
import uuid

args = argparse.ArgumentParser()
args.add_argument("host")
args.add_argument("port", type=int)
args.add_argument("out")
args.add_argument("--name", default="hub.org2.test")
args.add_argument("--dbid", default=base64.b64encode(uuid.uuid4().bytes).decode())
args.add_argument("--no-xshadow", action="store_true")
args.add_argument("--xshadow-reply")
args.add_argument("--drop-on-xshadow", action="store_true")
args.add_argument("--hold", action="store_true")
args.add_argument("--discard-reply", default="normal")
opts = args.parse_args()
os.makedirs(opts.out, exist_ok=True)

sessions = itertools.count(1)
messages = itertools.count(1)
# Shadow ids of accepted messages not yet returned by XQDISCARD.
pending = []


def log(session, line):
    with open(os.path.join(opts.out, "log.txt"), "a") as f:
        f.write(f"{session} {line}\n")


async def handle(reader, writer):
    session = next(sessions)
    shadowed = False

    async def reply(text):
        writer.write(text.encode() + b"\r\n")
        await writer.drain()

    await reply(f"220 {opts.name} Scripted primary ready")
    mail = None
    try:
        while True:
            raw = await asyncio.wait_for(reader.readline(), 120)
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            log(session, line)
            verb = line.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                words = [f"{opts.name} Hello", "PIPELINING", "SIZE 10485760", "8BITMIME"]
                if not opts.no_xshadow:
                    words.append("XSHADOW")
                await reply("\r\n".join(
                    f"250{'-' if i < len(words) - 1 else ' '}{w}" for i, w in enumerate(words)))
            elif verb == "XSHADOW":
                if opts.drop_on_xshadow:
                    writer.close()
                    return
                if opts.xshadow_reply is not None:
                    await reply(opts.xshadow_reply)
                else:
                    shadowed = True
                    await reply(f"250 {opts.dbid}")
            elif verb == "MAIL":
                params = line.split(">", 1)[1].split() if ">" in line else []
                xshadow = next((p.split("=", 1)[1] for p in params if p.upper().startswith("XSHADOW=")), None)
                mail = {"mail_from": line.split("<", 1)[1].split(">", 1)[0] if "<" in line else "",
                        "mail_line": line, "rcpt_tos": [], "xshadow": xshadow}
                await reply("250 2.1.0 Sender OK")
            elif verb == "RCPT":
                if mail is not None:
                    mail["rcpt_tos"].append(line.split("<", 1)[1].split(">", 1)[0])
                await reply("250 2.1.5 Recipient OK")
            elif verb == "DATA":
                await reply("354 Start mail input; end with <CRLF>.<CRLF>")
                data = []
                while True:
                    d = await asyncio.wait_for(reader.readline(), 120)
                    if not d:
                        return
                    if d in (b".\r\n", b".\n"):
                        break
                    data.append(d.decode("utf-8", "replace"))
                if mail is not None:
                    mail["data"] = "".join(data)
                    with open(os.path.join(opts.out, f"{time.time_ns():020}-{next(messages):05}.json"), "w") as f:
                        json.dump(mail, f)
                    if mail["xshadow"] and shadowed:
                        pending.append(mail["xshadow"])
                mail = None
                await reply("250 2.6.0 Queued mail for delivery")
            elif verb == "XQDISCARD":
                try:
                    n = int(line.split()[1])
                except (IndexError, ValueError):
                    await reply("501 5.5.4 Invalid arguments")
                    continue
                if not shadowed:
                    await reply("503 5.5.1 Bad sequence of commands")
                    continue
                if opts.discard_reply == "empty":
                    await reply("250 ")
                    continue
                if opts.discard_reply == "long":
                    await reply("250 " + "a" * 300)
                    continue
                ids = []
                if not opts.hold or os.path.exists(os.path.join(opts.out, "release")):
                    ids = pending[:n]
                    del pending[:n]
                if opts.discard_reply == "foreign":
                    # Ids it was never given, and a malformed one: ignored by the shadow.
                    ids = [str(uuid.uuid4()), "not-a-uuid"] + ids
                    ids = ids[:max(n, 2)]
                if not ids:
                    await reply("251 OK, no discard events")
                else:
                    await reply("\r\n".join(
                        f"250{'-' if i < len(ids) - 1 else ' '}{x}" for i, x in enumerate(ids)))
            elif verb == "RSET":
                mail = None
                await reply("250 2.0.0 Resetting")
            elif verb == "NOOP":
                await reply("250 2.0.0 OK")
            elif verb == "QUIT":
                await reply("221 2.0.0 Service closing transmission channel")
                writer.close()
                return
            else:
                await reply("500 5.3.3 Unrecognized command")
    except (asyncio.TimeoutError, ConnectionError):
        return
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def main():
    server = await asyncio.start_server(handle, opts.host, opts.port, reuse_address=True)
    print("READY", flush=True)
    sys.stdout.flush()
    async with server:
        await server.serve_forever()


asyncio.run(main())
