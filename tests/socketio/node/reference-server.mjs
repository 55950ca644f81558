#!/usr/bin/env node
// The reference for tests/socketio/CONTRACT.md: the official Socket.IO 4.8
// server (npm `socket.io`, pinned in package-lock.json) serving the interop
// contract that the clients (client.mjs, ../browser.mjs, ../python/client.py)
// check. wsx-hub's Socket.IO server must pass the same clients.
//
//   node tests/socketio/node/reference-server.mjs PORT [--redis URL]   # PORT 0: any free port
//
// Prints `listening PORT` (the real port) on stdout once it accepts
// connections; exits on SIGTERM / SIGINT, or when its stdin closes if
// started with --exit-on-stdin-close.
//
// With `--redis redis://HOST:PORT` it is one node of a cluster: the official
// Redis Streams adapter (`@socket.io/redis-streams-adapter`, which keeps
// connection state recovery: sessions and offsets in Redis) instead of the
// in-memory one. Two such nodes on one redis-server pass the two-node check
// (client.mjs --second).
import { createServer } from 'node:http';
import { Server } from 'socket.io';

function usage(msg) {
  process.stderr.write(`reference-server: ${msg}\nusage: reference-server.mjs PORT [--redis URL] [--exit-on-stdin-close]\n`);
  process.exit(2);
}

const argv = process.argv.slice(2);
let port = null;
let redisUrl = null;
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === '--redis') {
    if (i + 1 >= argv.length) usage('--redis needs a URL');
    redisUrl = argv[++i];
  } else if (a === '--exit-on-stdin-close') {
    process.stdin.on('end', () => process.exit(0));
    process.stdin.resume();
  } else if (/^\d+$/.test(a) && port === null) port = Number(a);
  else usage(`unexpected argument ${a}`);
}
if (port === null) usage('PORT is missing');

const httpServer = createServer((req, res) => {
  res.writeHead(404, { 'content-type': 'text/plain' });
  res.end('not found\n');
});

let adapter;
if (redisUrl) {
  const { createClient } = await import('redis');
  const { createAdapter } = await import('@socket.io/redis-streams-adapter');
  const redis = createClient({ url: redisUrl });
  redis.on('error', (e) => process.stderr.write(`reference-server: redis: ${e.message}\n`));
  await redis.connect();
  adapter = createAdapter(redis);
}

const io = new Server(httpServer, {
  ...(adapter ? { adapter } : {}),
  path: '/socket.io/',
  serveClient: false,
  transports: ['polling', 'websocket'],
  allowUpgrades: true,
  pingInterval: 1000,
  pingTimeout: 1000,
  maxHttpBufferSize: 1e6,
  connectionStateRecovery: {
    maxDisconnectionDuration: 30000,
    skipMiddlewares: true,
  },
});

/** The trailing acknowledgement callback of an event's arguments, if any. */
function popAck(args) {
  return typeof args[args.length - 1] === 'function' ? args.pop() : null;
}

/** echo(...args, ack) -> ack(...args); echo-event(...args) -> emit("echo", ...args). */
function echoHandlers(socket) {
  socket.on('echo', (...args) => {
    const ack = popAck(args);
    if (ack) ack(...args);
  });
  socket.on('echo-event', (...args) => {
    popAck(args);
    socket.emit('echo', ...args);
  });
}

// Namespace "/": the token check, then the relay and test events.
io.use((socket, next) => {
  const auth = socket.handshake.auth || {};
  if (auth.token === 'bad') {
    const err = new Error('unauthorized');
    err.data = { reason: 'bad token' };
    return next(err);
  }
  next();
});

io.on('connection', (socket) => {
  echoHandlers(socket);

  socket.on('join', (room, ack) => {
    socket.join(room);
    if (typeof ack === 'function') ack(true);
  });
  socket.on('leave', (room, ack) => {
    socket.leave(room);
    if (typeof ack === 'function') ack(true);
  });
  socket.on('publish', (...args) => {
    const ack = popAck(args);
    const [room, event, ...rest] = args;
    socket.to(room).emit(event, ...rest);
    if (ack) ack(true);
  });

  // ask(event, ...args, ack): emit `event` to the sender with an ack
  // (2 s), answer the caller with the sender's answer (its first argument).
  socket.on('ask', (...args) => {
    const ack = popAck(args);
    const [event, ...rest] = args;
    socket.timeout(2000).emit(event, ...rest, (err, answer) => {
      if (ack) ack(err ? { error: 'timeout' } : answer);
    });
  });

  socket.on('whoami', (ack) => {
    if (typeof ack !== 'function') return;
    const rooms = [...socket.rooms].filter((r) => r !== socket.id).sort();
    ack({ id: socket.id, rooms, recovered: socket.recovered });
  });
});

// "/admin": static, no middleware.
io.of('/admin').on('connection', (socket) => echoHandlers(socket));

// Dynamic namespaces /dyn-<name>.
io.of(/^\/dyn-[a-z0-9]+$/).on('connection', (socket) => {
  echoHandlers(socket);
  socket.on('nsp', (ack) => {
    if (typeof ack === 'function') ack(socket.nsp.name);
  });
});

httpServer.listen(port, '127.0.0.1', () => {
  process.stdout.write(`listening ${httpServer.address().port}\n`);
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    io.close();
    process.exit(0);
  });
}
