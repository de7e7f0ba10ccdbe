-- chat.lua: a chat page and its WebSocket, every message broadcast to everyone.
--
--   luajit examples/chat.lua PORT
--
-- Open http://127.0.0.1:PORT/ in several browser tabs. The page (examples/chat.html)
-- connects to ws://127.0.0.1:PORT/ws?name=NAME; each message a client sends is
-- broadcast, as JSON, to every connected client, the sender included.
local dir = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = dir .. "/../lua/?.lua;" .. package.path
local lm = require("LibMongoose")
local cjson = require("cjson")

local port = tonumber(arg[1])
if not port then
  io.stderr:write("usage: luajit examples/chat.lua PORT\n")
  os.exit(2)
end

local mgr = assert(lm.new())
local app = lm.router()
local listener -- set below; the handlers broadcast through it

local function broadcast(t) listener:broadcast(cjson.encode(t)) end

app:get("/", function(_, res) res:file(dir .. "/chat.html") end)

app:ws("/ws", {
  ws_open = function(conn)
    local name = lm.parse_query(conn.target:match("%?(.*)$") or "").name
    if type(name) ~= "string" or name == "" or #name > 32 then name = "guest" .. conn.id % 1000 end
    conn.data.name = name
    broadcast({ type = "join", name = name })
  end,
  ws_message = function(conn, text, kind)
    if kind ~= "text" or #text > 2000 then return conn:close(1003, "text messages only, up to 2000 bytes") end
    broadcast({ type = "msg", name = conn.data.name, text = text })
  end,
  ws_close = function(conn)
    broadcast({ type = "leave", name = conn.data.name })
  end,
})

local err
listener, err = mgr:listen("http://127.0.0.1:" .. port, { http = app, ping_interval_ms = 30000 })
if not listener then
  io.stderr:write("chat.lua: ", err, "\n")
  os.exit(1)
end
print(string.format("chat.lua listening on http://127.0.0.1:%d", listener:port()))
io.stdout:flush()
mgr:run()
