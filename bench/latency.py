#!/usr/bin/env python3
"""The time from the end of DATA to the 250, as a client on the Internet sees it.

`--sessions` concurrent sessions send `--messages` messages in all, one message per connection
(as smtp-source does without -d): connect, EHLO, MAIL, RCPT, DATA, the body, then the final
"\\r\\n.\\r\\n". For each message the clock runs from handing that terminator to the kernel until
the last line of the reply has been read. Every step is bounded by `--timeout`.

A message that is not answered 250 (refused, timed out, connection lost at any step) is a
failure: it is counted, its reason is printed, and it ranks as infinitely slow in the
percentiles, so failures can only make them worse.

Output, on stdout: one summary line of key=value pairs (milliseconds; "inf" where failures reach
into the percentile), then one "failure <count> <reason>" line per distinct reason.
"""

import argparse
import asyncio
import collections
import ipaddress
import math
import sys
import time

# A reply longer than this many lines is hostile or broken, not slow.
MAX_REPLY_LINES = 100


class Failure(Exception):
    """One message not answered 250; the text says at which step and why."""


def body(index, size, sender, recipient):
    """A message of `size` bytes (when `size` exceeds its headers), ending without its last
    CRLF: the terminator that follows supplies it. No line starts with a dot."""
    headers = (
        f"From: <{sender}>\r\n"
        f"To: <{recipient}>\r\n"
        f"Subject: latency {index}\r\n"
        f"Message-Id: <latency.{index}.{time.time_ns()}@bench.example.org>\r\n"
        "\r\n"
    ).encode()
    left = max(size - len(headers), 2)
    line = b"x" * 76 + b"\r\n"
    text = line * (left // len(line))
    rest = left - len(text)
    if rest >= 2:
        text += b"y" * (rest - 2) + b"\r\n"
    return headers + text.rstrip(b"\r\n")


async def reply(reader, timeout, step):
    """The code of one complete (possibly multi-line) reply."""
    for _ in range(MAX_REPLY_LINES):
        try:
            line = await asyncio.wait_for(reader.readline(), timeout)
        except asyncio.TimeoutError:
            raise Failure(f"{step}: no reply within {timeout:g} s") from None
        except (ConnectionError, ValueError) as err:
            raise Failure(f"{step}: {type(err).__name__}") from None
        if not line.endswith(b"\n"):
            raise Failure(f"{step}: connection closed")
        code = line[:3]
        if len(line) < 4 or not code.isdigit():
            raise Failure(f"{step}: malformed reply")
        if line[3:4] != b"-":
            return int(code)
    raise Failure(f"{step}: reply longer than {MAX_REPLY_LINES} lines")


async def send(writer, data, timeout, step):
    """Writes data and waits (bounded) until the transport has handed it to the kernel."""
    writer.write(data)
    try:
        await asyncio.wait_for(writer.drain(), timeout)
    except asyncio.TimeoutError:
        raise Failure(f"{step}: write not taken within {timeout:g} s") from None
    except ConnectionError as err:
        raise Failure(f"{step}: {type(err).__name__}") from None


async def expect(reader, writer, command, want, timeout, step):
    if command is not None:
        await send(writer, command, timeout, step)
    code = await reply(reader, timeout, step)
    if code != want:
        raise Failure(f"{step}: answered {code}")


async def one(args, index):
    """One message on its own connection: its DATA->250 time in ns, or Failure."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(args.host, args.port), args.timeout
        )
    except asyncio.TimeoutError:
        raise Failure(f"connect: not within {args.timeout:g} s") from None
    except OSError as err:
        raise Failure(f"connect: {err.strerror or type(err).__name__}") from None
    try:
        t = args.timeout
        await expect(reader, writer, None, 220, t, "greeting")
        await expect(reader, writer, b"EHLO latency.bench.example.org\r\n", 250, t, "EHLO")
        await expect(reader, writer, f"MAIL FROM:<{args.sender}>\r\n".encode(), 250, t, "MAIL")
        await expect(reader, writer, f"RCPT TO:<{args.to}>\r\n".encode(), 250, t, "RCPT")
        await expect(reader, writer, b"DATA\r\n", 354, t, "DATA")
        await send(writer, body(index, args.size, args.sender, args.to), t, "body")
        start = time.perf_counter_ns()
        await expect(reader, writer, b"\r\n.\r\n", 250, t, "end of DATA")
        took = time.perf_counter_ns() - start
        args.each.append((start, took))
        # The message is accepted; QUIT is politeness, and its answer is not measured.
        try:
            await expect(reader, writer, b"QUIT\r\n", 221, min(t, 5.0), "QUIT")
        except Failure:
            pass
        return took
    finally:
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), 5.0)
        except (asyncio.TimeoutError, OSError):
            pass


async def run(args):
    latencies = []
    failures = collections.Counter()
    indexes = iter(range(args.messages))

    async def session():
        # Each message is taken once from the shared iterator, so the total is exact.
        for index in indexes:
            try:
                latencies.append(await one(args, index))
            except Failure as failure:
                failures[str(failure)] += 1
            except OSError as err:
                failures[f"connection: {err.strerror or type(err).__name__}"] += 1

    start = time.monotonic()
    await asyncio.gather(*(session() for _ in range(args.sessions)))
    return latencies, failures, time.monotonic() - start


def percentile(ranked, total, p):
    """Nearest rank over `total` messages, of which those missing from `ranked` (the
    failures) rank after every answered one."""
    rank = max(math.ceil(p / 100 * total), 1)
    return ranked[rank - 1] / 1e6 if rank <= len(ranked) else math.inf


def loopback(value):
    if not ipaddress.ip_address(value).is_loopback:
        raise argparse.ArgumentTypeError(f"{value} is not a loopback address")
    return value


def positive(value):
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return number


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", type=loopback, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sessions", type=positive, default=20)
    parser.add_argument("--messages", type=positive, default=2000)
    parser.add_argument("--size", type=positive, default=4096)
    parser.add_argument("--from", dest="sender", default="bench@example.org")
    parser.add_argument("--to", default="rcpt@example.test")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per step")
    parser.add_argument("--each", help="file for every answered message's start and time (ns)")
    args = parser.parse_args()
    each_path, args.each = args.each, []
    if not 0 < args.port < 65536:
        parser.error(f"--port {args.port} is not a TCP port")
    if not 0 < args.timeout <= 3600:
        parser.error("--timeout must be between 0 and 3600 seconds")

    latencies, failures, seconds = asyncio.run(run(args))
    latencies.sort()
    total = args.messages
    figures = {
        "sent": total,
        "ok": len(latencies),
        "failed": sum(failures.values()),
        "seconds": f"{seconds:.1f}",
    }
    for p in (50, 90, 99):
        figures[f"p{p}"] = f"{percentile(latencies, total, p):.2f}"
    figures["max"] = f"{percentile(latencies, total, 100):.2f}"
    print(" ".join(f"{key}={value}" for key, value in figures.items()))
    if each_path:
        # Start times from the first message's, so that slow ones can be placed in the run.
        first = min((start for start, _ in args.each), default=0)
        with open(each_path, "w", encoding="ascii") as out:
            for start, took in sorted(args.each):
                out.write(f"{start - first} {took}\n")
    for reason, count in failures.most_common():
        print(f"failure {count} {reason}")
    return 0 if latencies else 1


if __name__ == "__main__":
    sys.exit(main())
