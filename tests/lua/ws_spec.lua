-- WebSocket: echo, upgrade on http:// (raw and through the router), subprotocols,
-- broadcast, fragmented and large messages, pings, close codes, per-connection data.
-- Peers: the library's own ws:// client and Python `websockets` (LM_PYTHON, a venv made
-- by scripts/test-lua.sh; skipped when no interpreter with websockets is found).
local H = require("helpers")
local lm = H.lm

local PY = os.getenv("LM_PYTHON")
if not PY then
  if os.execute("python3 -c 'import websockets' 2>/dev/null") == 0 then PY = "python3" end
end
local PYCLIENT = H.dir .. "/ws_client.py"

local function py(mgr, url, args, env)
  local cmd = string.format("%s%s %s %s %s", env or "", PY, PYCLIENT, url, args)
  return H.run_cmd(mgr, cmd, 20000)
end

describe("websocket", function()
  local mgr
  before_each(function() mgr = assert(lm.new()) end)
  after_each(function() mgr:close() end)

  -- A ws:// echo server like examples/echo.lua.
  local function echo_server(opts)
    opts = opts or {}
    opts.ws_message = opts.ws_message or function(c, msg, kind) c:send(msg, kind) end
    local l = assert(mgr:listen("ws://127.0.0.1:0", opts))
    return l, "ws://127.0.0.1:" .. l:port()
  end

  -- A client of the library; returns the connection and a log table.
  local function client(url, opts)
    local log = { messages = {}, kinds = {} }
    opts = opts or {}
    opts.ws_open = opts.ws_open or function() log.open = true end
    opts.ws_message = opts.ws_message or function(_, m, k)
      log.messages[#log.messages + 1] = m
      log.kinds[#log.kinds + 1] = k
    end
    opts.ws_close = opts.ws_close or function(_, code, reason, by_peer)
      log.closed = { code, reason, by_peer }
    end
    local c = assert(mgr:connect(url, opts))
    return c, log
  end

  it("echoes text and binary messages to the library's own client", function()
    local _, url = echo_server()
    local c, log = client(url .. "/any/path?x=1")
    assert.truthy(H.run_until(mgr, function() return log.open end))
    assert.equal("ws", c.kind)
    local bin = "\0\1\2\255binary"
    assert.is_true(c:send("hello"))
    assert.is_true(c:send(bin, "binary"))
    assert.is_true(c:send(""))
    assert.is_true(c:send("h\195\169llo \240\159\152\128")) -- UTF-8
    assert.truthy(H.run_until(mgr, function() return #log.messages == 4 end))
    assert.same({ "hello", bin, "", "h\195\169llo \240\159\152\128" }, log.messages)
    assert.same({ "text", "binary", "text", "text" }, log.kinds)
  end)

  it("tells the server the request target and agreed subprotocol", function()
    local opened
    local l = assert(mgr:listen("ws://127.0.0.1:0", {
      ws_protocols = { "chat.v2", "chat.v1" },
      ws_open = function(c, target, proto) opened = { target, proto, c.target, c.protocol } end,
    }))
    local c, log = client("ws://127.0.0.1:" .. l:port() .. "/room/7?user=ann", { ws_protocols = { "chat.v1", "chat.v2" } })
    assert.truthy(H.run_until(mgr, function() return opened and log.open end))
    assert.same({ "/room/7?user=ann", "chat.v2", "/room/7?user=ann", "chat.v2" }, opened)
    assert.equal("chat.v2", c.protocol)
  end)

  it("upgrades on an http:// listener with res:upgrade and per-connection handlers", function()
    local got = {}
    local l = assert(mgr:listen("http://127.0.0.1:0", {
      http = function(req, res)
        if req.path == "/ws" and req:is_websocket() then
          assert(res:upgrade({
            headers = { ["X-Upgraded"] = "yes" },
            ws_open = function(c) c.data.name = req.query.name end,
            ws_message = function(c, m) got[#got + 1] = c.data.name .. ":" .. m; c:send("ack " .. m) end,
          }))
        else
          res:text("plain http")
        end
      end,
    }))
    local base = "127.0.0.1:" .. l:port()
    local _, log = client("ws://" .. base .. "/ws?name=zoe")
    assert.truthy(H.run_until(mgr, function() return log.open end))
    local st, _, body = H.request(mgr, l:port(), "GET", "/other")
    assert.same({ 200, "plain http" }, { st, body })
    local raw = H.raw_request(mgr, l:port(),
      "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
      function(d) return d:find("\r\n\r\n") end)
    assert.matches("^HTTP/1.1 101", raw)
    assert.truthy(raw:find("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", 1, true))
    assert.truthy(raw:find("X-Upgraded: yes", 1, true))
    local c2
    c2, log = client("ws://" .. base .. "/ws?name=max")
    assert.truthy(H.run_until(mgr, function() return log.open end))
    c2:send("hi")
    assert.truthy(H.run_until(mgr, function() return #log.messages == 1 end))
    assert.same({ "max:hi" }, got)
    assert.same({ "ack hi" }, log.messages)
  end)

  it("upgrades through the router's app:ws, and refuses bad upgrades", function()
    local app = lm.router()
    local messages = {}
    app:get("/", function(_, res) res:text("home") end)
    app:ws("/chat/:room", {
      ws_message = function(c, m) messages[#messages + 1] = m; c:send(m:upper()) end,
    })
    local l = assert(mgr:listen("http://127.0.0.1:0", { http = app }))
    local c, log = client("ws://127.0.0.1:" .. l:port() .. "/chat/lobby")
    assert.truthy(H.run_until(mgr, function() return log.open end))
    c:send("hey")
    assert.truthy(H.run_until(mgr, function() return #log.messages == 1 end))
    assert.same({ "HEY" }, log.messages)
    -- a plain GET on the ws route falls through to 404
    local st = H.request(mgr, l:port(), "GET", "/chat/lobby")
    assert.equal(404, st)
    -- an upgrade without a key is answered by the library with 400
    local raw = H.raw_request(mgr, l:port(),
      "GET /chat/lobby HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
      function(d) return d:find("\r\n\r\n") end)
    assert.matches("^HTTP/1.1 400", raw)
  end)

  it("broadcasts to every WebSocket connection of a listener and of the manager", function()
    local l = assert(mgr:listen("ws://127.0.0.1:0"))
    local l2 = assert(mgr:listen("ws://127.0.0.1:0"))
    local logs = {}
    for i = 1, 5 do
      local _, log = client("ws://127.0.0.1:" .. (i <= 3 and l or l2):port())
      logs[i] = log
    end
    local plain = assert(mgr:connect("tcp://127.0.0.1:" .. l:port())) -- not a WebSocket
    assert.truthy(H.run_until(mgr, function()
      for i = 1, 5 do if not logs[i].open then return false end end
      return true
    end))
    H.run_for(mgr, 20)
    assert.equal(3, l:broadcast("to l"))
    assert.equal(2, lm.broadcast(l2, "\1\2", "binary"))
    assert.equal(5, mgr:broadcast("to all"))
    assert.truthy(H.run_until(mgr, function()
      for i = 1, 5 do if #logs[i].messages < 2 then return false end end
      return true
    end))
    for i = 1, 3 do assert.same({ "to l", "to all" }, logs[i].messages) end
    for i = 4, 5 do
      assert.same({ "\1\2", "to all" }, logs[i].messages)
      assert.same({ "binary", "text" }, logs[i].kinds)
    end
    plain:close()
  end)

  it("sends fragmented messages and streams them to a ws_stream listener", function()
    local whole, pieces = {}, {}
    local l1 = assert(mgr:listen("ws://127.0.0.1:0", { ws_message = function(_, m, k) whole[#whole + 1] = k .. ":" .. m end }))
    local l2 = assert(mgr:listen("ws://127.0.0.1:0", {
      ws_stream = true,
      ws_fragment = function(_, d, k, first, fin) pieces[#pieces + 1] = { d, k, first, fin } end,
    }))
    local c1, log1 = client("ws://127.0.0.1:" .. l1:port())
    local c2, log2 = client("ws://127.0.0.1:" .. l2:port())
    assert.truthy(H.run_until(mgr, function() return log1.open and log2.open end))
    for _, c in ipairs({ c1, c2 }) do
      assert.is_true(c:send_fragment("ab", "binary"))
      assert.is_true(c:send_fragment("cd"))
      assert.is_true(c:send_fragment("ef", nil, true))
      assert.is_true(c:send_fragment("one", "text", true)) -- a single-fragment message
    end
    assert.truthy(H.run_until(mgr, function() return #whole == 2 and #pieces >= 4 end))
    assert.same({ "binary:abcdef", "text:one" }, whole)
    assert.same({ "ab", "binary", true, false }, pieces[1])
    assert.same({ "cd", "binary", false, false }, pieces[2])
    assert.same({ "ef", "binary", false, true }, pieces[3])
    assert.same({ "one", "text", true, true }, pieces[4])
    -- kinds cannot change in the middle of a message
    assert.is_true(c1:send_fragment("x", "text"))
    assert.has_error(function() c1:send_fragment("y", "binary") end,
      "send_fragment: a text message is under way; finish it first")
    -- nor can a whole message interleave: a runtime failure from the library
    local ok, err, name = c1:send("interleaved")
    assert.is_nil(ok)
    assert.equal("INVALID_STATE", name)
    assert.matches("^INVALID_STATE: ", err)
    assert.is_true(c1:send_fragment("z", nil, true))
  end)

  it("echoes large messages intact (8 MiB binary, 2 MiB text) and every length class", function()
    local _, url = echo_server({ max_send_buffer = 64 * 1024 * 1024 })
    local c, log = client(url, { max_message_bytes = 32 * 1024 * 1024 })
    assert.truthy(H.run_until(mgr, function() return log.open end))
    local sizes = { 0, 1, 125, 126, 127, 65535, 65536, 65537 }
    for _, n in ipairs(sizes) do assert(c:send(string.rep("s", n), "binary")) end
    local big = {}
    for i = 0, 255 do big[#big + 1] = string.char(i) end
    big = string.rep(table.concat(big), 8 * 4096) -- 8 MiB of every byte value
    local text = string.rep("\195\169t\195\169 ", 2 * 1024 * 1024 / 6)
    assert(c:send(big, "binary"))
    assert(c:send(text))
    assert.truthy(H.run_until(mgr, function() return #log.messages == #sizes + 2 end, 20000))
    for i, n in ipairs(sizes) do assert.equal(n, #log.messages[i]) end
    assert.equal(lm.md5_hex(big), lm.md5_hex(log.messages[#sizes + 1]))
    assert.equal(lm.md5_hex(text), lm.md5_hex(log.messages[#sizes + 2]))
    assert.equal("text", log.kinds[#sizes + 2])
  end)

  it("answers pings and reports control frames", function()
    local server_ctl, client_ctl, server_conn = {}, {}, nil
    local l = assert(mgr:listen("ws://127.0.0.1:0", {
      ws_open = function(c) server_conn = c end,
      ws_ctl = function(_, kind, data) server_ctl[#server_ctl + 1] = kind .. ":" .. data end,
    }))
    local c, log = client("ws://127.0.0.1:" .. l:port(), {
      ws_ctl = function(_, kind, data) client_ctl[#client_ctl + 1] = kind .. ":" .. data end,
    })
    assert.truthy(H.run_until(mgr, function() return log.open and server_conn end))
    assert.is_true(c:ping("from client"))
    assert.is_true(server_conn:ping("from server"))
    assert.is_true(server_conn:pong("unsolicited"))
    assert.truthy(H.run_until(mgr, function() return #server_ctl >= 2 and #client_ctl >= 3 end))
    table.sort(server_ctl)
    table.sort(client_ctl)
    assert.same({ "ping:from client", "pong:from server" }, server_ctl)
    assert.same({ "ping:from server", "pong:from client", "pong:unsolicited" }, client_ctl)
    local ok, _, name = c:ping(string.rep("x", 126))
    assert.is_nil(ok)
    assert.equal("INVALID_ARGUMENT", name)
  end)

  it("closes with codes and reasons, both ways", function()
    local server_closed, server_conn = {}, nil
    local l = assert(mgr:listen("ws://127.0.0.1:0", {
      ws_open = function(c) server_conn = c end,
      ws_close = function(c, code, reason, by_peer) server_closed[#server_closed + 1] = { code, reason, by_peer } end,
    }))
    local url = "ws://127.0.0.1:" .. l:port()
    -- the client closes
    local c, log = client(url)
    assert.truthy(H.run_until(mgr, function() return log.open and server_conn end))
    assert.is_true(c:close(4001, "client says bye"))
    assert.is_true(c:close(4001, "again")) -- twice: harmless
    assert.truthy(H.run_until(mgr, function() return log.closed and #server_closed == 1 end))
    assert.same({ 4001, "client says bye", true }, server_closed[1])
    assert.equal(4001, log.closed[1])
    -- the server closes
    server_conn = nil
    local _, log2 = client(url)
    assert.truthy(H.run_until(mgr, function() return log2.open and server_conn end))
    assert.is_true(server_conn:close(1001, "going away"))
    assert.truthy(H.run_until(mgr, function() return log2.closed and #server_closed == 2 end))
    assert.same({ 1001, "going away", true }, log2.closed)
    assert.equal(1001, server_closed[2][1])
    -- default code 1000, empty reason
    server_conn = nil
    local c3, log3 = client(url)
    assert.truthy(H.run_until(mgr, function() return log3.open and server_conn end))
    assert.is_true(c3:close())
    assert.truthy(H.run_until(mgr, function() return log3.closed and #server_closed == 3 end))
    assert.same({ 1000, "" }, { server_closed[3][1], server_closed[3][2] })
    -- codes that may not be sent are runtime failures, reasons are limited
    server_conn = nil
    local c4, log4 = client(url)
    assert.truthy(H.run_until(mgr, function() return log4.open and server_conn end))
    for _, code in ipairs({ 999, 1005, 1006, 1015, 5000 }) do
      local ok, _, name = c4:close(code)
      assert.is_nil(ok)
      assert.equal("INVALID_ARGUMENT", name)
    end
    local ok, _, name = c4:close(1000, string.rep("r", 124))
    assert.is_nil(ok)
    assert.equal("INVALID_ARGUMENT", name)
    -- abort: no handshake, the peer sees the connection vanish (1006 has no frame)
    assert.is_true(c4:abort())
    assert.truthy(H.run_until(mgr, function() return #server_closed == 4 end))
    assert.is_true(server_closed[4][3])
  end)

  it("checks origins and sends keepalive pings", function()
    local l = assert(mgr:listen("ws://127.0.0.1:0", {
      ws_origins = { "https://good.example" },
      ping_interval_ms = 50,
    }))
    local url = "ws://127.0.0.1:" .. l:port()
    local errors, pings = {}, 0
    local _, bad = client(url, {
      ws_origin = "https://evil.example",
      error = function(_, msg) errors[#errors + 1] = msg end,
    })
    local _, good = client(url, {
      ws_origin = "https://good.example",
      ws_ctl = function(_, kind) if kind == "ping" then pings = pings + 1 end end,
    })
    assert.truthy(H.run_until(mgr, function() return good.open and #errors > 0 and pings >= 2 end))
    assert.is_nil(bad.open)
    assert.matches("403", table.concat(errors, " "))
    -- the raw handshake with a refused origin is answered 403
    local raw = H.raw_request(mgr, l:port(),
      "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nOrigin: https://evil.example\r\n" ..
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
      function(d) return d:find("\r\n\r\n") end)
    assert.matches("^HTTP/1.1 403", raw)
  end)

  it("refuses text that is not UTF-8 and misuse on closed WebSocket connections", function()
    local _, url = echo_server()
    local c, log = client(url)
    assert.truthy(H.run_until(mgr, function() return log.open end))
    local ok, err, name = c:send("\255\254")
    assert.is_nil(ok)
    assert.equal("INVALID_ARGUMENT", name)
    assert.is_string(err)
    assert.is_true(c:send("\255\254", "binary"))
    assert.has_error(function() c:send("x", "utf8") end)
    c:close()
    assert.truthy(H.run_until(mgr, function() return c.closed end))
    assert.has_error(function() c:send("x") end, "send: connection " .. c.id .. " (ws) is closed")
    assert.has_error(function() c:ping() end)
  end)

  it("serves Python websockets: echo with permessage-deflate, and without", function()
    if not PY then pending("no python3 with websockets (set LM_PYTHON)") return end
    local _, url = echo_server({ ws_deflate = true })
    local p = py(mgr, url .. "/py", "echo 20 3000")
    assert.equal(0, p.rc, p.out .. p.err)
    assert.matches("open extensions=permessage%-deflate", p.out)
    assert.matches("echo ok 20 3000", p.out)
    p = py(mgr, url, "echo 3 200000", "LM_WS_DEFLATE=0 ")
    assert.equal(0, p.rc, p.out .. p.err)
    assert.matches("open extensions=none", p.out)
    assert.matches("echo ok 3 200000", p.out)
  end)

  it("exchanges close codes with Python websockets", function()
    if not PY then pending("no python3 with websockets (set LM_PYTHON)") return end
    local closed
    local l = assert(mgr:listen("ws://127.0.0.1:0", {
      ws_close = function(_, code, reason) closed = { code, reason } end,
    }))
    local p = py(mgr, "ws://127.0.0.1:" .. l:port(), "close 4321 python-bye")
    assert.equal(0, p.rc, p.out .. p.err)
    assert.matches("closed rcvd=4321", p.out)
    assert.truthy(H.run_until(mgr, function() return closed end))
    assert.same({ 4321, "python-bye" }, closed)
  end)

  it("broadcasts to Python clients", function()
    if not PY then pending("no python3 with websockets (set LM_PYTHON)") return end
    local n = 0
    local l = assert(mgr:listen("ws://127.0.0.1:0", { ws_open = function() n = n + 1 end }))
    local url = "ws://127.0.0.1:" .. l:port()
    local procs = {}
    for i = 1, 3 do procs[i] = H.spawn(string.format("%s %s %s listen 2", PY, PYCLIENT, url)) end
    assert.truthy(H.run_until(mgr, function() return n == 3 end, 10000))
    assert.equal(3, l:broadcast("first"))
    assert.equal(3, l:broadcast("second"))
    assert.truthy(H.run_until(mgr, function()
      for i = 1, 3 do if not procs[i]:done() then return false end end
      return true
    end, 10000))
    for i = 1, 3 do
      assert.equal(0, procs[i].rc)
      assert.matches("got first\ngot second", procs[i].out)
    end
  end)
end)
