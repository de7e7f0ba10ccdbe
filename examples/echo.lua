-- echo.lua: a WebSocket echo server (any path), permessage-deflate offered: the same
-- service as build/examples/ws_echo, and the LuaJIT server of the benchmarks.
--
--   luajit examples/echo.lua PORT [--tls CERT KEY]
--
-- Listens on 127.0.0.1:PORT (0 picks a free port; the URL is printed): ws://, or wss://
-- with --tls and PEM files. Every text and binary message comes back as it came; pings
-- are answered by the library.
local dir = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = dir .. "/../lua/?.lua;" .. package.path
local lm = require("LibMongoose")

local port = tonumber(arg[1])
local tls = arg[2] == "--tls"
if not port or (#arg ~= 1 and not (tls and #arg == 4)) then
  io.stderr:write("usage: luajit examples/echo.lua PORT [--tls CERT KEY]\n")
  os.exit(2)
end
local scheme = tls and "wss" or "ws"

-- The hot path: one function for every message (no closure per message); the manager
-- takes events from the library 64 at a time.
local function echo(conn, msg, kind)
  conn:send(msg, kind)
end

local mgr = assert(lm.new())
local listener, err = mgr:listen(string.format("%s://127.0.0.1:%d", scheme, port), {
  ws_deflate = true,
  max_frame_bytes = 64 * 1024 * 1024, -- conformance suites send 16 MiB frames
  max_message_bytes = 64 * 1024 * 1024,
  max_send_buffer = 256 * 1024 * 1024,
  tls = tls and { cert = arg[3], key = arg[4] } or nil,
  ws_message = echo,
})
if not listener then
  io.stderr:write("echo.lua: ", err, "\n")
  os.exit(1)
end
print(string.format("echo.lua listening on %s://127.0.0.1:%d", scheme, listener:port()))
io.stdout:flush()
mgr:run()
