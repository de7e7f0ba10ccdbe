-- luv.lua: a server driven by a luv (libuv) loop, fd-driven, beside other luv work.
--
--   luajit examples/luv.lua PORT
--
-- mgr:attach(uv) watches the manager's file descriptor with uv.new_poll: the loop
-- sleeps until there is network work or a timer is due, so an idle server costs no CPU.
-- A luv timer ticks once a second meanwhile; GET / answers with both counters. The same
-- code runs under luvit, whose `uv` module is luv.
local dir = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = dir .. "/../lua/?.lua;" .. package.path
local lm = require("LibMongoose")
local uv = require("luv")

local port = tonumber(arg[1])
if not port then
  io.stderr:write("usage: luajit examples/luv.lua PORT\n")
  os.exit(2)
end

local ticks, requests = 0, 0

local mgr = assert(lm.new())
local listener, err = mgr:listen("http://127.0.0.1:" .. port, {
  http = function(_, res)
    requests = requests + 1
    res:json({ requests = requests, ticks = ticks })
  end,
})
if not listener then
  io.stderr:write("luv.lua: ", err, "\n")
  os.exit(1)
end

-- Other work on the same loop: a luv timer.
local timer = uv.new_timer()
timer:start(100, 1000, function() ticks = ticks + 1 end)

-- The manager joins the loop; attachment:detach() would take it off again.
local attachment = assert(mgr:attach(uv))

-- Stop cleanly on SIGINT / SIGTERM.
local function stop()
  attachment:detach()
  timer:close()
  mgr:close()
  uv.stop()
end
for _, name in ipairs({ "sigint", "sigterm" }) do
  local sig = uv.new_signal()
  sig:start(name, function() sig:close(); stop() end)
  uv.unref(sig)
end

print(string.format("luv.lua listening on http://127.0.0.1:%d", listener:port()))
io.stdout:flush()
uv.run()
