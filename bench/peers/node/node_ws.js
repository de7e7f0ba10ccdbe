// Node `ws` echo server (bufferutil installed beside it, so ws uses it for masking),
// permessage-deflate accepted (ws defaults: threshold 1024 B).
//   node node_ws.js PORT      (0 picks a free port; the port is printed)
const { WebSocketServer } = require("ws");
require("bufferutil"); // fail loudly if the native helper is missing
const wss = new WebSocketServer({
  host: "127.0.0.1",
  port: Number(process.argv[2] || 0),
  perMessageDeflate: true,
  maxPayload: 64 * 1024 * 1024,
  backlog: 4096,
});
wss.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on("error", () => {});
});
wss.on("listening", () => console.log(`node_ws listening on ws://127.0.0.1:${wss.address().port}`));
