-- The server of sigpipe_spec.lua: a LibMongoose server in a luajit process of its own
-- with the default SIGPIPE disposition (set here, whatever the parent left), serving
-- large replies on http and https:
--   GET /stream  64 KiB pieces through res:write (chunked), until a write fails
--   GET /big     one 1 MiB res:send
--   GET /ws      a WebSocket; the message "go" starts 100 KB sends until one fails
--   GET /alive   "alive"
--   GET /quit    "bye", then the process ends (exit 0 after "clean-exit")
-- Arguments: CERT KEY. Prints "ports HTTP HTTPS", then one line per event.
local ffi = require("ffi")
ffi.cdef([[ void *signal(int sig, void *handler); ]])
local SIGPIPE = 13
local prev = ffi.C.signal(SIGPIPE, nil) -- SIG_DFL
local lm = require("LibMongoose")

local function say(...)
  io.write(table.concat({ ... }, " "), "\n")
  io.flush()
end
say("sigpipe-was", prev == nil and "default" or "not-default")

local mgr = assert(lm.new())
local CHUNK = string.rep("s", 64 * 1024)
local BIG = string.rep("b", 1024 * 1024)
local WSMSG = string.rep("w", 100 * 1000)
local MAX_SENDS = 2000 -- bounds every loop below (the send buffer limit ends them sooner)

local app = lm.router()
app:get("/stream", function(_, res)
  local n, t = 0, nil
  t = mgr:timer(1, function()
    for _ = 1, 4 do
      n = n + 1
      local ok, err = res:write(CHUNK)
      if not ok then say("stream-failed", n, err); t:cancel(); return end
      if n >= MAX_SENDS then res:finish(); say("stream-done"); t:cancel(); return end
    end
  end, true)
end)
app:get("/big", function(_, res) assert(res:send(BIG)) end)
app:ws("/ws", {
  ws_message = function(c, msg)
    if msg ~= "go" then return end
    local n, t = 0, nil
    t = mgr:timer(1, function()
      for _ = 1, 4 do
        n = n + 1
        if c.closed then say("ws-closed", n); t:cancel(); return end
        local ok, err = c:send(WSMSG)
        if not ok then say("ws-failed", n, err); t:cancel(); return end
        if n >= MAX_SENDS then say("ws-done"); t:cancel(); return end
      end
    end, true)
  end,
})
app:get("/alive", function(_, res) res:text("alive") end)
app:get("/quit", function(_, res)
  res:text("bye")
  mgr:timer(50, function() mgr:stop() end)
end)

local handlers = {
  http = app,
  close = function(c) if c.kind ~= "listener" then say("closed", c.kind) end end,
  error = function(_, msg) say("error", (msg:gsub("%s", "_"))) end,
}
local http = assert(mgr:listen("http://127.0.0.1:0", handlers))
local https_opts = { tls = { cert = arg[1], key = arg[2] } }
for k, v in pairs(handlers) do https_opts[k] = v end
local https = assert(mgr:listen("https://127.0.0.1:0", https_opts))
say("ports", http:port(), https:port())

assert(mgr:run(50))
mgr:close()
say("clean-exit")
os.exit(0)
