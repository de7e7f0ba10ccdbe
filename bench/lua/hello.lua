-- HTTP hello through the LibMongoose router (the LuaJIT row of the HTTP benchmark).
--   luajit bench/lua/hello.lua PORT      (0 picks a free port; the port is printed)
-- Run from the repository root (or set LUA_PATH): it loads lua/LibMongoose.lua.
local root = (arg[0]:match("^(.*)/bench/lua/[^/]*$") or ".")
package.path = root .. "/lua/?.lua;" .. package.path
local lm = require("LibMongoose")

local mgr = assert(lm.new())
local app = lm.router()
app:get("/", function(_, res) res:text("Hello, world!\n") end)
local l = assert(mgr:listen("http://127.0.0.1:" .. (tonumber(arg[1]) or 0), { http = app }))
print("hello.lua listening on http://127.0.0.1:" .. tostring(l:port()))
io.stdout:flush()
mgr:run()
