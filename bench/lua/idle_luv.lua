-- A WebSocket echo manager attached to a luv loop (mode "fd": the loop polls the
-- manager's fd), for measuring the CPU it uses while its connections are idle.
--   luajit bench/lua/idle_luv.lua PORT      (0 picks a free port; the port is printed)
local root = (arg[0]:match("^(.*)/bench/lua/[^/]*$") or ".")
package.path = root .. "/lua/?.lua;" .. package.path
local lm = require("LibMongoose")
local uv = require("luv")

local mgr = assert(lm.new())
local l = assert(mgr:listen("ws://127.0.0.1:" .. (tonumber(arg[1]) or 0), {
  ws_message = function(c, data, kind) c:send(data, kind) end,
}))
assert(mgr:attach(uv))
print("idle_luv.lua listening on ws://127.0.0.1:" .. tostring(l:port()))
io.stdout:flush()
uv.run()
