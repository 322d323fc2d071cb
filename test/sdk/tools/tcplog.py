#!/usr/bin/env python3
"""A logging TCP proxy for debugging the SDK suites: listens on --listen, forwards every connection to
--target, and writes each chunk in both directions (connection id, direction, length, the first
--max-bytes bytes with non-printable bytes escaped) to --log. It sees HTTP/1.1 requests and responses,
streamed Connect envelopes included, exactly as the SDKs and envd exchange them.

  tcplog.py --listen 127.0.0.1:49983 --target 127.0.0.1:49984 --log /tmp/wire.log

Standard library only; stops on SIGINT/SIGTERM.
"""

import argparse
import asyncio
import itertools
import signal
import time


def _addr(s: str):
    host, _, port = s.rpartition(":")
    return host or "127.0.0.1", int(port)


def _render(data: bytes, limit: int) -> str:
    out = []
    for b in data[:limit]:
        if b in (10, 13):
            out.append({10: "\\n\n", 13: "\\r"}[b])
        elif 32 <= b < 127:
            out.append(chr(b))
        else:
            out.append(f"\\x{b:02x}")
    if len(data) > limit:
        out.append(f"... [{len(data) - limit} more bytes]")
    return "".join(out)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--max-bytes", type=int, default=4096, help="bytes of each chunk written to the log")
    args = ap.parse_args()
    target = _addr(args.target)
    ids = itertools.count(1)
    log = open(args.log, "a", buffering=1, encoding="utf-8")

    def write(cid: int, arrow: str, data: bytes) -> None:
        log.write(f"--- {time.strftime('%H:%M:%S')} #{cid} {arrow} {len(data)} bytes\n{_render(data, args.max_bytes)}\n")

    async def pump(cid, arrow, reader, writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                write(cid, arrow, data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass

    async def handle(creader, cwriter):
        cid = next(ids)
        try:
            sreader, swriter = await asyncio.wait_for(asyncio.open_connection(*target), 10)
        except (OSError, asyncio.TimeoutError) as e:
            log.write(f"--- #{cid} cannot reach target: {e}\n")
            cwriter.close()
            return
        log.write(f"--- #{cid} open\n")
        await asyncio.gather(pump(cid, "C>S", creader, swriter), pump(cid, "S>C", sreader, cwriter))
        log.write(f"--- #{cid} closed\n")

    host, port = _addr(args.listen)
    server = await asyncio.start_server(handle, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    log.close()


if __name__ == "__main__":
    asyncio.run(main())
