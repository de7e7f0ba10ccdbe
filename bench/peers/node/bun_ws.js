// Bun's WebSocket server (uWebSockets inside): echo, permessage-deflate accepted.
//   bun bun_ws.js PORT      (0 picks a free port; the port is printed)
const server = Bun.serve({
  hostname: "127.0.0.1",
  port: Number(process.argv[2] || 0),
  fetch(req, server) {
    if (server.upgrade(req)) return;
    return new Response("WebSocket only\n", { status: 426 });
  },
  websocket: {
    perMessageDeflate: true,
    maxPayloadLength: 64 * 1024 * 1024,
    backpressureLimit: 256 * 1024 * 1024,
    idleTimeout: 0,
    // compress = true: used only on connections that negotiated permessage-deflate
    message(ws, msg) {
      ws.send(msg, true);
    },
  },
});
console.log(`bun_ws listening on ws://127.0.0.1:${server.port}`);
