#!/usr/bin/env python3
"""sink -- a minimal SMTP sink ("the Internet" for S2): accepts every message and discards it.

    sink.py PORT [--host 127.0.0.1] [--pidfile F]

Used by bench/run only when Postfix's smtp-sink is not installed. ESMTP with PIPELINING,
8BITMIME and SIZE; no STARTTLS, no AUTH (Postern is configured with relayhost_tls = none,
like the reference's smtp_tls_security_level = none). Prints a count on SIGTERM.
"""
import argparse
import asyncio
import os
import signal
import sys

COUNT = 0


async def client(reader, writer):
    global COUNT
    try:
        writer.write(b"220 sink.remote.test ESMTP bench sink\r\n")
        while True:
            line = await reader.readline()
            if not line:
                break
            verb = line[:4].upper()
            if verb in (b"EHLO",):
                writer.write(b"250-sink.remote.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
                             b"250-SIZE 104857600\r\n250 ENHANCEDSTATUSCODES\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go ahead\r\n")
                await reader.readuntil(b"\r\n.\r\n")
                COUNT += 1
                writer.write(b"250 2.0.0 Ok: discarded\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 2.0.0 Bye\r\n")
                await writer.drain()
                break
            else:  # HELO, MAIL, RCPT, RSET, NOOP ...
                writer.write(b"250 2.0.0 Ok\r\n")
            if not reader._buffer:  # noqa: SLF001 -- flush only when the pipeline is drained
                await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--pidfile")
    a = ap.parse_args()
    server = await asyncio.start_server(client, a.host, a.port, limit=1 << 24, backlog=1024)
    if a.pidfile:
        with open(a.pidfile, "w") as f:
            f.write(f"{os.getpid()}\n")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    async with server:
        await stop.wait()
    print(f"sink: {COUNT} messages", file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main())
