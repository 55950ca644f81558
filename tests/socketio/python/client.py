#!/usr/bin/env python3
"""python-socketio's client against a server of tests/socketio/CONTRACT.md.

    python tests/socketio/python/client.py http://127.0.0.1:PORT
        [--mode upgrade|websocket|polling]...   (default: all three)
        [--check NAME]...                       (default: every check)
        [--second http://127.0.0.1:PORT2]       (adds the two-node check)

The same checks as the official client's (tests/socketio/node/checks.mjs)
where python-socketio has the feature. It has no connection state recovery
(it sends no pid/offset when it reconnects), so "state recovery" is reported
as skipped. Prints one JSON line per check and mode, then a summary line,
and exits 0 only if no check failed (1 if one failed, 2 on a usage error):

    {"client": "python", "mode": "polling", "check": "acks", "ok": true, "ms": 80, "detail": "..."}
    socket.io interop (python-socketio 5.18.1): 24 passed, 0 failed, 3 skipped

Installed by scripts/install-socketio into the interop virtualenv
(requirements.txt beside this file).
"""

import argparse
import concurrent.futures
import itertools
import json
import sys
import threading
import time
from importlib.metadata import version

import socketio

# Which transports each mode allows; None is python-socketio's default:
# polling first, then the upgrade to WebSocket.
MODES = {
    "upgrade": None,
    "websocket": ["websocket"],
    "polling": ["polling"],
}
CHECK_TIMEOUT = 10.0
QUIET = 0.3
_seq = itertools.count()


class CheckError(Exception):
    pass


def uniq(prefix):
    return f"{prefix}-{int(time.time() * 1000):x}-{next(_seq)}"


def norm(v):
    """A JSON-comparable form: bytes as {"bin": hex}, tuples as lists."""
    if isinstance(v, (bytes, bytearray, memoryview)):
        return {"bin": bytes(v).hex()}
    if isinstance(v, (list, tuple)):
        return [norm(x) for x in v]
    if isinstance(v, dict):
        return {k: norm(v[k]) for k in sorted(v)}
    return v


def show(v):
    s = json.dumps(norm(v), ensure_ascii=False)
    return s if len(s) <= 300 else f"{s[:300]}... ({len(s)} chars)"


def same(got, want, what):
    if json.dumps(norm(got)) != json.dumps(norm(want)):
        raise CheckError(f"{what}: got {show(got)}, expected {show(want)}")


def check(cond, msg):
    if not cond:
        raise CheckError(msg)


def until(pred, timeout, what):
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise CheckError(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(0.01)


def pattern(n, seed=0):
    return bytes((i * 7 + seed) % 251 for i in range(n))


def strip_offset(args, want_len, what):
    """A server event's arguments without the recovery offset that the
    server appends (a string) to every event it emits without an ack."""
    check(
        len(args) == want_len + 1 and isinstance(args[want_len], str) and args[want_len],
        f"{what}: expected {want_len} argument(s) plus the recovery offset (a string), got {show(args)}",
    )
    return list(args[:want_len])


class Clients:
    """The sockets of one check: connected with the mode's transports,
    disconnected at the end."""

    def __init__(self, mode):
        self.mode = mode
        self.clients = []

    def client(self):
        c = socketio.Client(reconnection=False)
        self.clients.append(c)
        return c

    def connect(self, url, namespaces=("/",), auth=None, client=None):
        c = client or self.client()
        c.connect(url, transports=MODES[self.mode], namespaces=list(namespaces), auth=auth, wait_timeout=5)
        return c

    def close_all(self):
        for c in self.clients:
            try:
                c.disconnect()
            except Exception:
                pass


def record(client, event, namespace="/"):
    """Every arguments list that `client` receives for `event`, in order."""
    got = []

    def handler(*args):
        got.append(list(args))

    client.on(event, handler, namespace=namespace)
    return got


def ack_all(client, event, *args, namespace="/", timeout=5.0):
    """Emits with an ack; returns every argument of the ack."""
    done = threading.Event()
    result = []

    def cb(*got):
        result.append(list(got))
        done.set()

    client.emit(event, data=tuple(args), namespace=namespace, callback=cb)
    if not done.wait(timeout):
        raise CheckError(f"no ack for {event} in {timeout} s")
    return result[0]


def ack1(client, event, *args, namespace="/", timeout=5.0):
    got = ack_all(client, event, *args, namespace=namespace, timeout=timeout)
    check(len(got) == 1, f"ack of {event}: {len(got)} arguments {show(got)}, expected 1")
    return got[0]


def refused(clients, url, namespaces, auth=None):
    """Connects where the server must refuse; returns the connect_error data."""
    c = clients.client()
    errors = []
    for ns in namespaces:
        c.on("connect_error", lambda data=None, _ns=ns: errors.append((_ns, data)), namespace=ns)
    try:
        clients.connect(url, namespaces=namespaces, auth=auth, client=c)
    except socketio.exceptions.ConnectionError as e:
        check(errors, f"connect refused ({e}) without a connect_error")
        return errors
    raise CheckError(f"{namespaces} connected, expected a connect_error")


# ---------------------------------------------------------------- checks


def check_connect(c, url, mode, second):
    s = c.connect(url)
    check(isinstance(s.sid, str) and s.sid, f"sid {s.sid!r}")
    t = s.transport()
    # The Engine.IO open packet's values.
    check(s.eio.sid and s.eio.sid != s.get_sid(), f"engine sid {s.eio.sid!r} (socket id {s.get_sid()!r})")
    same([s.eio.ping_interval, s.eio.ping_timeout], [1.0, 1.0], "handshake pingInterval, pingTimeout (s)")
    if mode != "websocket":
        same(s.eio.upgrades, ["websocket"], "handshake upgrades")
    if mode == "upgrade":
        # python-engineio upgrades within connect() when the server offers it.
        until(lambda: s.transport() == "websocket", 5, "the upgrade to websocket")
        same(ack1(s, "echo", "after upgrade"), "after upgrade", "echo after upgrade")
    else:
        time.sleep(0.5 if mode == "polling" else 0)
        check(s.transport() == MODES[mode][0], f"transport {s.transport()}, expected {MODES[mode][0]}")
    return f"{t}, sid {s.get_sid()}"


def check_whoami(c, url, mode, second):
    s = c.connect(url, auth={"token": "good"})
    same(ack1(s, "whoami"), {"id": s.get_sid(), "rooms": [], "recovered": False}, "whoami")
    return f"id {s.get_sid()}"


def check_rooms(c, url, mode, second):
    room = uniq("room")
    a, b, outsider = c.client(), c.client(), c.client()
    got_a, got_b, got_out = (record(x, "room-msg") for x in (a, b, outsider))
    for x in (a, b, outsider):
        c.connect(url, client=x)
    same(ack1(a, "join", room), True, "join ack (a)")
    same(ack1(b, "join", room), True, "join ack (b)")
    same(ack1(a, "whoami")["rooms"], [room], "whoami rooms after join")
    same(ack1(b, "publish", room, "room-msg", {"n": 1}, "two", [3]), True, "publish ack")
    until(lambda: len(got_a) >= 1, 3, "the publish to reach a")
    time.sleep(QUIET)
    check(len(got_a) == 1, f"a received the publish {len(got_a)} times")
    same(strip_offset(got_a[0], 3, "publish"), [{"n": 1}, "two", [3]], "published arguments")
    check(not got_b, f"the sender received its own publish {len(got_b)} times")
    check(not got_out, f"a socket outside the room received the publish {len(got_out)} times")
    b.emit("publish", data=(room, "room-msg", "no-ack"))
    until(lambda: len(got_a) >= 2, 3, "the publish without ack to reach a")
    same(strip_offset(got_a[1], 1, "publish without ack"), ["no-ack"], "published arguments (no ack)")
    same(ack1(a, "leave", room), True, "leave ack")
    same(ack1(a, "whoami")["rooms"], [], "whoami rooms after leave")
    same(ack1(b, "publish", room, "room-msg", "after-leave"), True, "publish ack after leave")
    time.sleep(QUIET)
    check(len(got_a) == 2, f"a received {len(got_a) - 2} publish(es) after leaving the room")
    return f"room {room}"


def check_acks(c, url, mode, second):
    s = c.client()
    echoes = record(s, "echo")
    asked = []

    def add(x, y):
        return x + y

    def shape(*args):
        asked.append(list(args))
        return dict(args[0], answered=True)

    s.on("add", add)
    s.on("shape", shape)
    c.connect(url, client=s)
    args = ["hello", 42, 1.5, -7, True, False, None, {"a": [1, 2, {"b": None}], "s": "h\u00e9las \u2713 \U0001F600"}, []]
    same(ack_all(s, "echo", *args), args, "echo ack arguments")
    same(ack_all(s, "echo"), [], "echo ack without arguments")
    s.emit("echo-event", data=("x", {"y": 1}))
    until(lambda: echoes, 3, 'the "echo" event')
    same(strip_offset(echoes[0], 2, '"echo" event'), ["x", {"y": 1}], '"echo" event arguments')
    same(ack1(s, "ask", "add", 2, 3), 5, "ask: the answer to the server's ack")
    same(ack1(s, "ask", "shape", {"k": [1, "v"]}), {"k": [1, "v"], "answered": True}, "ask with an object")
    same(asked, [[{"k": [1, "v"]}]], "the arguments of the server's event with an ack")
    same(s.call("echo", "called", timeout=5), "called", "call()")
    big = "wsx \u2713 " * 65536
    same(ack1(s, "echo", big), big, "echo of 512 KiB")
    return f"{len(args)} args echoed, ask answered"


def check_ack_timeout(c, url, mode, second):
    s = c.client()
    asked = []

    def ignored(*args):
        # python-socketio acks every event that asks for it when the
        # handler returns (None: an ack without arguments), so the only way
        # to leave the server's ack unanswered is to answer late: after the
        # server's 2 s (the handler runs on its own thread).
        asked.append(args)
        time.sleep(2.5)

    s.on("ignored", ignored)
    c.connect(url, client=s)
    t0 = time.monotonic()
    same(ack1(s, "ask", "ignored", "q", timeout=6), {"error": "timeout"}, "ask unanswered")
    ms = int((time.monotonic() - t0) * 1000)
    check(len(asked) == 1, f"the client was asked {len(asked)} times")
    check(1500 <= ms < 5000, f"the server's ack timed out after {ms} ms, expected about 2000")
    return f"timed out after {ms} ms"


def check_binary(c, url, mode, second):
    s = c.client()
    echoes = record(s, "echo")
    s.on("reverse", lambda buf: {"reversed": bytes(reversed(buf))})
    c.connect(url, client=s)
    one, two, empty = pattern(256), pattern(65536, 3), b""
    same(ack_all(s, "echo", one, two), [one, two], "two binary arguments")
    nested = {"a": one, "list": [1, {"b": two, "c": "text"}, empty], "deep": {"deeper": {"d": pattern(3, 9)}}}
    same(ack_all(s, "echo", "label", nested, 7), ["label", nested, 7], "nested binary")
    s.emit("echo-event", data=({"blob": one}, two))
    until(lambda: echoes, 3, 'the binary "echo" event')
    same(strip_offset(echoes[0], 2, 'binary "echo" event'), [{"blob": one}, two], 'binary "echo" event')
    room = uniq("bin")
    peer = c.client()
    got = record(peer, "bin-msg")
    c.connect(url, client=peer)
    same(ack1(peer, "join", room), True, "join ack")
    same(ack1(s, "publish", room, "bin-msg", one, {"two": two}), True, "publish ack")
    until(lambda: got, 3, "the binary publish")
    time.sleep(QUIET)
    check(len(got) == 1, f"the binary publish arrived {len(got)} times")
    same(strip_offset(got[0], 2, "binary publish"), [one, {"two": two}], "binary publish")
    same(ack1(s, "ask", "reverse", bytes([1, 2, 3])), {"reversed": bytes([3, 2, 1])}, "binary answer to the server's ack")
    return "attachments echoed"


def check_heartbeat(c, url, mode, second):
    # Idle for longer than pingInterval + pingTimeout (2 s): the server's
    # pings and the client's pongs keep the connection open.
    s = c.client()
    disconnects = []
    s.on("disconnect", lambda *reason: disconnects.append(reason))
    c.connect(url, client=s)
    time.sleep(2.6)
    check(not disconnects and s.connected, f"disconnected while idle: {disconnects}")
    same(ack1(s, "echo", "still here"), "still here", "echo after 2.6 s idle")
    return "connected after 2.6 s idle"


def check_payload_limit(c, url, mode, second):
    # maxHttpBufferSize 1e6: a larger packet ends the connection.
    s = c.client()
    disconnects = []
    s.on("disconnect", lambda *reason: disconnects.append(reason))
    c.connect(url, client=s)
    acked = []
    s.emit("echo", "x" * 1100000, callback=lambda *a: acked.append(a))
    until(lambda: disconnects, 5, "the disconnect after a 1.1 MB packet")
    check(not acked, "the 1.1 MB packet was echoed")
    return f"disconnected: {disconnects[0]}"


def check_namespaces(c, url, mode, second):
    # One connection, three namespaces.
    s = c.connect(url, namespaces=["/", "/admin", "/dyn-abc"])
    same(ack_all(s, "echo", "adm", 1, namespace="/admin"), ["adm", 1], "/admin echo")
    same(ack1(s, "echo", {"d": True}, namespace="/dyn-abc"), {"d": True}, "/dyn-abc echo")
    same(ack1(s, "nsp", namespace="/dyn-abc"), "/dyn-abc", "/dyn-abc nsp")
    same(ack1(s, "echo", "main"), "main", "/ echo")
    solo = c.connect(url, namespaces=["/admin"])
    same(ack1(solo, "echo", "solo", namespace="/admin"), "solo", "/admin alone")
    for bad in ("/nope", "/dyn-UPPER"):
        errors = refused(c, url, [bad])
        same(errors, [(bad, {"message": "Invalid namespace"})], f"{bad} connect_error")
    return "/, /admin, /dyn-abc connected; /nope, /dyn-UPPER refused"


def check_middleware(c, url, mode, second):
    errors = refused(c, url, ["/"], auth={"token": "bad"})
    same(errors, [("/", {"message": "unauthorized", "data": {"reason": "bad token"}})], "connect_error")
    admin = c.connect(url, namespaces=["/admin"], auth={"token": "bad"})
    same(ack1(admin, "echo", 1, namespace="/admin"), 1, "/admin echo with the bad token")
    return 'refused with unauthorized {"reason":"bad token"}'


def check_two_nodes(c, url, mode, second):
    room = uniq("cluster")
    a, b, a2 = c.client(), c.client(), c.client()
    got = [record(x, "node-msg") for x in (a, b, a2)]
    c.connect(url, client=a)
    c.connect(second, client=b)
    c.connect(url, client=a2)
    for x in (a, b):
        same(ack1(x, "join", room), True, "join ack")
    same(ack1(a, "publish", room, "node-msg", "from-first", {"bin": pattern(16)}), True, "publish ack (first node)")
    until(lambda: got[1], 3, "the publish from the first node to reach the second")
    same(ack1(b, "publish", room, "node-msg", "from-second"), True, "publish ack (second node)")
    until(lambda: got[0], 3, "the publish from the second node to reach the first")
    time.sleep(QUIET * 2)
    check(len(got[0]) == 1, f"the first node's socket received {len(got[0])} messages, expected 1")
    check(len(got[1]) == 1, f"the second node's socket received {len(got[1])} messages, expected 1")
    check(not got[2], f"a socket outside the room received {len(got[2])} messages")
    same(strip_offset(got[1][0], 2, "first -> second"), ["from-first", {"bin": pattern(16)}], "first -> second")
    same(strip_offset(got[0][0], 1, "second -> first"), ["from-second"], "second -> first")
    return f"{url} <-> {second}"


CHECKS = {
    "connect and transport": check_connect,
    "whoami": check_whoami,
    "join, publish, leave": check_rooms,
    "acks": check_acks,
    "ack timeout": check_ack_timeout,
    "binary": check_binary,
    "namespaces": check_namespaces,
    "middleware refusal": check_middleware,
    "heartbeat": check_heartbeat,
    "payload limit": check_payload_limit,
    "state recovery": None,  # not in python-socketio
    "two nodes": check_two_nodes,
}
SKIPPED = {"state recovery": "python-socketio has no connection state recovery (it reconnects as a new socket)"}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url")
    ap.add_argument("--mode", action="append", choices=list(MODES))
    ap.add_argument("--check", action="append", choices=list(CHECKS))
    ap.add_argument("--second")
    args = ap.parse_args()
    url = args.url.rstrip("/")
    second = args.second.rstrip("/") if args.second else None
    modes = args.mode or list(MODES)
    names = [n for n in CHECKS if (not args.check or n in args.check) and (n != "two nodes" or second)]
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    lock = threading.Lock()

    def emit(line):
        with lock:
            print(json.dumps({"client": "python", **line}, ensure_ascii=False), flush=True)

    def run(mode, name):
        fn = CHECKS[name]
        if fn is None:
            counts["skipped"] += 1
            emit({"mode": mode, "check": name, "ok": True, "skipped": True, "ms": 0, "detail": SKIPPED[name]})
            return
        c = Clients(mode)
        t0 = time.monotonic()
        try:
            detail, ok = fn(c, url, mode, second), True
        except Exception as e:  # a check's failure, or the client's own error
            detail, ok = f"{type(e).__name__}: {e}" if not isinstance(e, CheckError) else str(e), False
        finally:
            c.close_all()
        ms = int((time.monotonic() - t0) * 1000)
        if ms > CHECK_TIMEOUT * 1000 and ok:
            ok, detail = False, f"took {ms} ms, over {int(CHECK_TIMEOUT * 1000)} ms"
        with lock:
            counts["passed" if ok else "failed"] += 1
        emit({"mode": mode, "check": name, "ok": ok, "ms": ms, "detail": detail or ""})

    for mode in modes:
        # The checks of one mode run at once, each with its own sockets.
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(names)) as pool:
            for f in [pool.submit(run, mode, n) for n in names]:
                f.result()

    print(
        f"socket.io interop (python-socketio {version('python-socketio')}): "
        f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped",
        flush=True,
    )
    return 0 if counts["failed"] == 0 and counts["passed"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
