#!/usr/bin/env python3
"""Client on Python's `websockets` (asyncio API) for wsx's interop tests
(crates/wsx/tests/interop.rs).

  python client.py --url ws://127.0.0.1:PORT/ [--compression off|default|no-context-takeover]
                   [--max-size BYTES]

Sends the test messages of common.py one at a time, checks that each echo
comes back byte for byte with the same type, then closes with 1000. Prints
to stdout:
  negotiated-extensions: <Sec-WebSocket-Extensions of the 101 response, empty if none>
  ok <n> messages            (or "mismatch: ..." / "error: ...")
Exits 0 only when every echo matched and the close was clean.
"""

import argparse
import asyncio
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree

from websockets.asyncio.client import connect

from common import MODES, compression_kwargs, messages


def fail(line):
    print(line, flush=True)
    sys.exit(1)


async def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--compression", choices=MODES, default="default")
    p.add_argument("--max-size", type=int, default=32 << 20)
    args = p.parse_args()
    msgs = messages()
    try:
        async with connect(
            args.url,
            max_size=args.max_size,
            ping_interval=None,
            **compression_kwargs(args.compression, server=False),
        ) as ws:
            print(f"negotiated-extensions: {ws.response.headers.get('Sec-WebSocket-Extensions', '')}", flush=True)
            for i, m in enumerate(msgs):
                kind = "text" if isinstance(m, str) else "binary"
                size = len(m.encode()) if isinstance(m, str) else len(m)
                what = f"message {i} ({kind}, {size} bytes)"
                await ws.send(m)
                echo = await ws.recv()
                if type(echo) is not type(m):
                    fail(f"mismatch: {what} came back as {'text' if isinstance(echo, str) else 'binary'}")
                if echo != m:
                    fail(f"mismatch: {what} came back different ({len(echo)} {'chars' if isinstance(echo, str) else 'bytes'})")
            await ws.close(1000, "done")
        if ws.close_code != 1000:
            fail(f"error: closed with {ws.close_code} {ws.close_reason}")
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001 - report anything to the test
        fail(f"error: {e!r}")
    print(f"ok {len(msgs)} messages", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
