// Node http hello.   node node_http.js PORT   (0 picks a free port; the port is printed)
const http = require("http");
const body = Buffer.from("Hello, world!\n");
const server = http.createServer((req, res) => {
  res.writeHead(200, { "Content-Type": "text/plain", "Content-Length": body.length });
  res.end(body);
});
server.keepAliveTimeout = 60000;
server.listen(Number(process.argv[2] || 0), "127.0.0.1", 4096, () =>
  console.log(`node_http listening on http://127.0.0.1:${server.address().port}`));
