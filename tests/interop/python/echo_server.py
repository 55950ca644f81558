#!/usr/bin/env python3
"""Echo server on Python's `websockets` (asyncio API) for wsx's interop
tests (crates/wsx/tests/interop.rs).

  python echo_server.py [--compression off|default|no-context-takeover]
                        [--max-size BYTES] [--once]

Listens on 127.0.0.1 with an ephemeral port and prints the port alone on
the first stdout line. Echoes text as text and binary as binary, byte for
byte. Logs to stderr, one line per event:
  negotiated-extensions: <Sec-WebSocket-Extensions of the 101 response, empty if none>
  closed: code=<code> reason=<reason>
With --once it exits (status 0) after its first connection has closed.
"""

import argparse
import asyncio
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

from common import MODES, compression_kwargs


def log(line):
    print(line, file=sys.stderr, flush=True)


async def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--compression", choices=MODES, default="default")
    p.add_argument("--max-size", type=int, default=32 << 20)
    p.add_argument("--once", action="store_true")
    args = p.parse_args()
    done = asyncio.Event()

    async def handler(ws):
        log(f"negotiated-extensions: {ws.response.headers.get('Sec-WebSocket-Extensions', '')}")
        try:
            async for msg in ws:
                await ws.send(msg)  # str goes back as text, bytes as binary
        except ConnectionClosed:
            pass
        except Exception as e:  # noqa: BLE001 - report anything to the test
            log(f"error: {e!r}")
        log(f"closed: code={ws.close_code} reason={ws.close_reason}")
        done.set()

    async with serve(
        handler,
        "127.0.0.1",
        0,
        max_size=args.max_size,
        ping_interval=None,
        **compression_kwargs(args.compression, server=True),
    ) as server:
        port = server.sockets[0].getsockname()[1]
        print(port, flush=True)
        if args.once:
            await done.wait()
        else:
            await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
