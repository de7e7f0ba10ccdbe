// Bun.serve HTTP hello.   bun bun_http.js PORT   (0 picks a free port; the port is printed)
const server = Bun.serve({
  hostname: "127.0.0.1",
  port: Number(process.argv[2] || 0),
  fetch() {
    return new Response("Hello, world!\n", { headers: { "Content-Type": "text/plain" } });
  },
});
console.log(`bun_http listening on http://127.0.0.1:${server.port}`);
