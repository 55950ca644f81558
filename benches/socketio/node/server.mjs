// The official Socket.IO server (npm `socket.io` 4.8) serving the relay
// contract of the Socket.IO fan-out benchmark
// (crates/wsx-hub/benches/socketio_fanout.rs):
//
//   namespace "/";
//   join(room, ack)                      -> socket.join(room), ack(true)
//   leave(room, ack)                     -> socket.leave(room), ack(true)
//   publish(room, event, ...args[, ack]) -> socket.to(room).emit(event, ...args)
//                                           (everyone in the room but the
//                                           sender), then ack(true) if asked
//
// Usage: node server.mjs PORT   (prints "listening PORT" once it listens)
import { createServer } from "node:http";
import { Server } from "socket.io";

const port = Number(process.argv[2] ?? 3000);
const http = createServer();
const io = new Server(http, {
  serveClient: false,
  // Engine.IO's defaults otherwise: pingInterval 25 s, pingTimeout 20 s,
  // maxHttpBufferSize 1 MB, no permessage-deflate.
});

io.on("connection", (socket) => {
  socket.on("join", (room, ack) => {
    if (typeof room === "string") socket.join(room);
    if (typeof ack === "function") ack(typeof room === "string");
  });
  socket.on("leave", (room, ack) => {
    if (typeof room === "string") socket.leave(room);
    if (typeof ack === "function") ack(typeof room === "string");
  });
  socket.on("publish", (room, event, ...rest) => {
    const ack = typeof rest[rest.length - 1] === "function" ? rest.pop() : null;
    const ok = typeof room === "string" && typeof event === "string";
    if (ok) socket.to(room).emit(event, ...rest);
    if (ack) ack(ok);
  });
});

http.listen(port, "127.0.0.1", () => {
  console.log(`listening ${http.address().port}`);
});

// Stop when the parent closes stdin or asks.
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(0));
