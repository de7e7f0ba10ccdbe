-- Robustness of LibMongoose against a careless program: every path that writes a
-- header refuses what would split it; lm.close takes every documented object;
-- non-finite numbers are misuse wherever a number is taken; a reply after the client
-- reset fails with CLOSED; ids are read-only; error messages quote at most a
-- bounded piece of an offending value.
local H = require("helpers")
local lm = H.lm
local uv = require("luv")
local sock = require("rawsock")

local THIS = "[^:]*robustness_spec%.lua:%d+: "

local function plain(s) return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")) end

-- `err`, an error caught inside a handler, must be a misuse error reported at the
-- handler's line whose message contains each of the plain strings in `wants`.
local function check_err(err, wants, label)
  label = label and (label .. ": ") or ""
  assert(err ~= nil, label .. "no error raised (expected " .. table.concat(wants, " ... ") .. ")")
  err = tostring(err)
  assert(err:match("^" .. THIS), label .. "error not reported at the caller: " .. err:sub(1, 300))
  for _, w in ipairs(wants) do
    assert(err:find(w, 1, true), label .. "error '" .. err:sub(1, 300) .. "' does not contain '" .. w .. "'")
  end
end

-- fn must raise a misuse error reported at the caller's line whose message contains
-- each of the plain strings in `wants`.
local function misuse(wants, fn, label)
  local ok, err = pcall(fn)
  label = label and (label .. ": ") or ""
  assert(not ok, label .. "no error raised (expected " .. table.concat(wants, " ... ") .. ")")
  err = tostring(err)
  assert(err:match("^" .. THIS), label .. "error not reported at the caller: " .. err:sub(1, 300))
  for _, w in ipairs(wants) do
    assert(err:find(w, 1, true), label .. "error '" .. err:sub(1, 300) .. "' does not contain '" .. w .. "'")
  end
  return err
end

local UPGRADE = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
  .. "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
  .. "Sec-WebSocket-Protocol: chat\r\n\r\n"
local GET = "GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

-- A header line "X-Evil" that must never reach the wire.
local function injected(raw) return raw:find("\nX%-Evil") ~= nil or raw:find("\rX%-Evil") ~= nil end

describe("header injection", function()
  local mgr, l, dir, handler

  before_each(function()
    mgr = assert(lm.new())
    dir = H.tmpdir() .. "/hdr"
    os.execute("mkdir -p " .. dir)
    H.write_file(dir .. "/a.txt", "hello\n")
    l = assert(mgr:listen("http://127.0.0.1:0", { http = function(req, res) handler(req, res) end }))
  end)
  after_each(function() mgr:close() end)

  -- Runs fn(req, res) on a real request; returns the error it raised (or nil) and the
  -- raw reply the client got. A request left unanswered gets 500.
  local function on_request(fn, raw)
    local err
    handler = function(req, res)
      local ok, e = pcall(fn, req, res)
      if not ok then err = e end
      if not res.done then res:status(500):text("refused\n") end
    end
    local reply = H.raw_request(mgr, l:port(), raw or GET, function(s)
      return (s:find("^HTTP/1%.1 101") and s:find("\r\n\r\n")) or H.parse_response(s) ~= nil
    end)
    return err, reply
  end

  -- Bad headers as { name, value, what the message names }.
  local BAD = {
    { "X-A", "1\r\nX-Evil: 1", "value" },
    { "X-A", "1\nX-Evil: 1", "value" },
    { "X-A", "1\rX-Evil: 1", "value" },
    { "X-A", "1\0X-Evil: 1", "value" },
    { "X-A", "1\1", "value" },
    { "X-Evil: 1\r\nX-A", "1", "name" },
    { "Bad Name", "1", "name" },
    { "X:Y", "1", "name" },
    { "", "1", "name" },
  }
  -- Header blocks given as strings that are not well-formed lines.
  local BAD_BLOCKS = {
    "X-A: 1\r\nBad Name: 2\r\n",
    "X-A: 1\r\n\r\nX-Evil: 2\r\n",
    "X-A: 1\rX-Evil: 2\r\n",
    "X-A: 1\0\r\nX-Evil: 2\r\n",
    "NoColon\r\n",
  }

  local function wants_for(fname, bad)
    if bad[3] == "value" then return { fname .. ": bad value for header \"X-A\"" } end
    return { fname .. ": bad header name" }
  end

  -- Paths that take a request: fname, function(req, res, headers), the request.
  local REQUEST_PATHS = {
    { "set", function(_, res, h) res:set(h) end },
    { "file", function(_, res, h) res:file(dir .. "/a.txt", { headers = h }) end },
    { "dir", function(_, res, h) res:dir(dir, { headers = h }) end },
    { "upgrade", function(_, res, h) res:upgrade({ headers = h }) end, UPGRADE },
  }

  for _, path in ipairs(REQUEST_PATHS) do
    local fname, call, raw = path[1], path[2], path[3]
    it(fname .. "{headers = table} refuses CR, LF, NUL and bad names, and nothing goes out", function()
      for i, bad in ipairs(BAD) do
        local err, reply = on_request(function(req, res) call(req, res, { [bad[1]] = bad[2] }) end, raw)
        local label = fname .. " #" .. i
        check_err(err, wants_for(fname, bad), label)
        assert(not injected(reply), label .. ": injected: " .. reply)
        assert.matches("^HTTP/1%.1 500", reply)
      end
    end)
  end

  it("res:append, res:type and res:redirect refuse the same", function()
    for i, bad in ipairs(BAD) do
      local err = on_request(function(_, res) res:append(bad[1], bad[2]) end)
      check_err(err, wants_for("append", bad), "append #" .. i)
    end
    local err = on_request(function(_, res) res:type("text/plain\r\nX-Evil: 1") end)
    check_err(err, { "type: bad value for header \"Content-Type\"" })
    err = on_request(function(_, res) res:redirect("/x\r\nX-Evil: 1") end)
    check_err(err, { "redirect: bad value for header \"Location\"" })
  end)

  it("header blocks given as strings must be well-formed lines", function()
    for i, block in ipairs(BAD_BLOCKS) do
      local err, reply = on_request(function(_, res) res:file(dir .. "/a.txt", { headers = block }) end)
      check_err(err, { "file: bad ", "header" }, "block #" .. i)
      assert(not injected(reply), "block #" .. i .. ": injected: " .. reply)
      err = on_request(function(_, res) res:upgrade({ headers = block }) end, UPGRADE)
      check_err(err, { "upgrade: bad ", "header" }, "upgrade block #" .. i)
    end
    -- well-formed blocks pass, with or without the final CRLF
    local _, reply = on_request(function(_, res) assert(res:file(dir .. "/a.txt", { headers = "X-A: 1\r\nX-B:2" })) end)
    assert.matches("\r\nX%-A: 1\r\n", reply)
    assert.matches("\r\nX%-B: ?2\r\n", reply)
  end)

  it("content types from mime_types and the upgrade's protocol are header values too", function()
    local err, reply = on_request(function(_, res)
      res:file(dir .. "/a.txt", { mime_types = { txt = "text/plain\r\nX-Evil: 1" } })
    end)
    check_err(err, { "file: bad value for header \"Content-Type\"" })
    assert(not injected(reply), reply)
    err = on_request(function(_, res) res:dir(dir, { mime_types = "txt=text/plain\nX-Evil: 1" }) end)
    check_err(err, { "dir: bad value for header \"Content-Type\"" })
    err, reply = on_request(function(_, res) res:upgrade({ protocol = "chat\r\nX-Evil: 1" }) end, UPGRADE)
    check_err(err, { "upgrade: bad value for header \"Sec-WebSocket-Protocol\"" })
    assert(not injected(reply), reply)
  end)

  it("paths without a request: static, app:static, app:ws, connect, listen", function()
    for i, bad in ipairs(BAD) do
      local h = { [bad[1]] = bad[2] }
      local label = "#" .. i
      misuse(wants_for("static", bad), function() lm.static(dir, { headers = h }) end, "static " .. label)
      misuse(wants_for("static", bad), function() lm.router():static("/s", dir, { headers = h }) end, "app:static " .. label)
      misuse(wants_for("ws", bad), function() lm.router():ws("/ws", { headers = h }) end, "app:ws " .. label)
      misuse(wants_for("connect", bad), function()
        local c = mgr:connect("ws://127.0.0.1:" .. l:port() .. "/", { ws_headers = h })
        if c then c:abort() end
      end, "connect " .. label)
    end
    for i, block in ipairs(BAD_BLOCKS) do
      misuse({ "connect: bad ", "header" }, function()
        local c = mgr:connect("ws://127.0.0.1:" .. l:port() .. "/", { ws_headers = block })
        if c then c:abort() end
      end, "connect block #" .. i)
    end
    misuse({ "connect: bad value for header \"Origin\"" }, function()
      local c = mgr:connect("ws://127.0.0.1:" .. l:port() .. "/", { ws_origin = "http://a\r\nX-Evil: 1" })
      if c then c:abort() end
    end)
    misuse({ "connect: bad value for header \"Sec-WebSocket-Protocol\"" }, function()
      local c = mgr:connect("ws://127.0.0.1:" .. l:port() .. "/", { ws_protocols = { "chat\r\nX-Evil: 1" } })
      if c then c:abort() end
    end)
    misuse({ "listen: bad value for header \"Sec-WebSocket-Protocol\"" }, function()
      local l2 = mgr:listen("ws://127.0.0.1:0", { ws_protocols = "chat\nX-Evil: 1" })
      if l2 then l2:close() end
    end)
    misuse({ "ws: bad value for header \"Sec-WebSocket-Protocol\"" }, function()
      lm.router():ws("/ws", { protocol = "chat\r\nX-Evil: 1" })
    end)
    -- what the server received: no handshake carried an injected header
    local seen = {}
    handler = function(req, res) seen[#seen + 1] = req.headers["x-evil"]; res:text("x") end
    H.run_for(mgr, 50)
    assert.same({}, seen)
  end)

  it("good headers still go out through every path", function()
    local good = { ["X-Good"] = "yes", ["X-Num"] = 42 }
    local _, reply = on_request(function(_, res) assert(res:file(dir .. "/a.txt", { headers = good })) end)
    assert.matches("\r\nX%-Good: yes\r\n", reply)
    assert.matches("\r\nX%-Num: 42\r\n", reply)
    _, reply = on_request(function(_, res) assert(res:upgrade({ headers = good })) end, UPGRADE)
    assert.matches("^HTTP/1%.1 101", reply)
    assert.matches("\r\nX%-Good: yes\r\n", reply)
  end)
end)

describe("lm.close", function()
  local mgr
  before_each(function() mgr = assert(lm.new()) end)
  after_each(function() mgr:close(); uv.run("nowait") end)

  it("takes a timer: returns true, the timer never fires, harmless twice", function()
    local fired = false
    local t = assert(mgr:timer(20, function() fired = true end))
    assert.is_true(lm.close(t))
    assert.is_false(t.active)
    assert.is_true(lm.close(t))
    assert.is_true(t:close())
    H.run_for(mgr, 80)
    assert.is_false(fired)
    -- a repeating one, through the method form
    local n = 0
    local r = assert(mgr:timer(5, function() n = n + 1 end, true))
    H.run_until(mgr, function() return n >= 2 end)
    assert.is_true(r:close())
    local seen = n
    H.run_for(mgr, 40)
    assert.equal(seen, n)
    -- after the manager is closed
    local t2 = assert(mgr:timer(1000))
    mgr:close()
    assert.is_true(lm.close(t2))
  end)

  it("takes an attachment: returns true, detaches, harmless twice", function()
    local a = assert(mgr:attach(uv))
    assert.is_true(lm.close(a))
    assert.is_true(lm.close(a))
    assert.is_true(a:close())
    local b = assert(mgr:attach(uv, { mode = "timer", interval = 5 })) -- not "already attached"
    assert.is_true(lm.close(b))
    mgr:close()
    assert.is_true(lm.close(b))
  end)

  it("still refuses what is not a manager, connection, timer or attachment", function()
    misuse({ "close: bad argument #1" }, function() lm.close({}) end)
    misuse({ "close: bad argument #1" }, function() lm.close(nil) end)
  end)
end)

describe("non-finite numbers", function()
  local mgr, res_server, ws_server
  local NONFINITE = { 0 / 0, math.huge, -math.huge }

  before_each(function() mgr = assert(lm.new()) end)
  after_each(function() mgr:close(); uv.run("nowait") end)

  local LISTEN_NUMBERS = {
    "max_connections", "backlog", "max_header_bytes", "max_uri_bytes", "max_queued_events",
    "max_body_bytes", "max_frame_bytes", "max_message_bytes", "max_send_buffer", "send_low_water",
    "max_queued_bytes", "header_timeout_ms", "body_timeout_ms", "idle_timeout_ms", "ping_interval_ms",
    "pong_timeout_ms", "close_timeout_ms", "tls_handshake_timeout_ms",
  }
  local CONNECT_NUMBERS = { "idle_timeout_ms", "max_send_buffer", "max_frame_bytes", "max_message_bytes" }

  -- { fname, what the message names, function(v) }. A call that is wrongly accepted must
  -- not hang or leave anything running: a timer stops poll/run, attachments detach.
  local function manager_cases()
    local cases = {}
    for _, k in ipairs(LISTEN_NUMBERS) do
      cases[#cases + 1] = { "listen", "'" .. k .. "'", function(v)
        local x = mgr:listen("http://127.0.0.1:0", { [k] = v })
        if x then x:close() end
      end }
    end
    for _, k in ipairs(CONNECT_NUMBERS) do
      cases[#cases + 1] = { "connect", "'" .. k .. "'", function(v)
        local x = mgr:connect("tcp://127.0.0.1:1", { [k] = v })
        if x then x:abort() end
      end }
    end
    cases[#cases + 1] = { "listen", "handshake_timeout_ms", function(v)
      local x = mgr:listen("https://127.0.0.1:0", { tls = { cert = "c.pem", key = "k.pem", handshake_timeout_ms = v } })
      if x then x:close() end
    end }
    cases[#cases + 1] = { "new", "'max_connections'", function(v) local m = lm.new({ max_connections = v }); if m then m:close() end end }
    cases[#cases + 1] = { "new", "'max_threadsafe_bytes'", function(v)
      local m = lm.new({ max_threadsafe_bytes = v })
      if m then m:close() end
    end }
    cases[#cases + 1] = { "poll", "'ms'", function(v) mgr:timer(20); mgr:poll(v) end }
    cases[#cases + 1] = { "events", "'ms'", function(v) mgr:events(v) end }
    cases[#cases + 1] = { "run", "'ms'", function(v) mgr:timer(20, function() mgr:stop() end); mgr:run(v) end }
    cases[#cases + 1] = { "timer", "'ms'", function(v) local t = mgr:timer(v); if t then t:cancel() end end }
    cases[#cases + 1] = { "timer", "'ms'", function(v) local t = lm.timer(mgr, v); if t then t:cancel() end end }
    cases[#cases + 1] = { "wakeup", "'id'", function(v) mgr:wakeup(v) end }
    cases[#cases + 1] = { "crc32", "'crc'", function(v) lm.crc32("x", v) end }
    for _, mode in ipairs({ "timer", "idle", "fd" }) do
      cases[#cases + 1] = { "attach", "'interval'", function(v)
        local a = mgr:attach(uv, { mode = mode, interval = v })
        if a then a:detach() end
      end }
    end
    return cases
  end

  -- Cases that need a response or a WebSocket connection: function(v, res, ws).
  local RES_CASES = {
    { "status", "'code'", function(v, res) res:status(v) end },
    { "redirect", "'status'", function(v, res) res:redirect("/x", v) end },
    { "set", "\"X\"", function(v, res) res:set("X", v) end },
    { "set", "\"X\"", function(v, res) res:set({ X = v }) end },
    { "append", "\"X\"", function(v, res) res:append("X", v) end },
    { "file", "\"X\"", function(v, res) res:file("/nonexistent", { headers = { X = v } }) end },
    { "upgrade", "\"X\"", function(v, res) res:upgrade({ headers = { X = v } }) end },
    { "close", "'code'", function(v, _, ws) ws:close(v) end },
  }

  it("are misuse for every numeric parameter of the manager, options and utilities", function()
    local n = 0
    for _, case in ipairs(manager_cases()) do
      for _, v in ipairs(NONFINITE) do
        misuse({ case[1] .. ": bad ", case[2], "finite number expected, got " .. tostring(v) },
          function() case[3](v) end, case[1] .. " " .. case[2] .. " = " .. tostring(v))
        n = n + 1
      end
    end
    assert.is_true(n >= 100)
    -- finite values in range still work
    assert(mgr:poll(0))
    mgr:timer(10)
    assert(mgr:poll(-1)) -- negative: no limit (the timer ends the wait)
    local a = assert(mgr:attach(uv, { mode = "timer", interval = 5 }))
    a:detach()
  end)

  it("are misuse for statuses, header values and close codes", function()
    local pending = {}
    local l = assert(mgr:listen("http://127.0.0.1:0", { http = function(_, res) pending[#pending + 1] = res end }))
    local wl = assert(mgr:listen("ws://127.0.0.1:0", { ws_open = function(c) ws_server = c end }))
    ws_server = nil
    local opened = false
    assert(mgr:connect("ws://127.0.0.1:" .. wl:port() .. "/", { ws_open = function() opened = true end }))
    H.run_until(mgr, function() return opened and ws_server end)
    assert.truthy(ws_server)
    for _, case in ipairs(RES_CASES) do
      for _, v in ipairs(NONFINITE) do
        -- a fresh request each time: a call wrongly accepted would answer it
        local fd = sock.connect(l:port())
        sock.send(fd, case[1] == "upgrade" and UPGRADE or GET)
        local before = #pending
        H.run_until(mgr, function() return #pending > before end)
        res_server = pending[#pending]
        assert.truthy(res_server)
        misuse({ case[1] .. ": bad ", case[2], "finite number expected, got " .. tostring(v) },
          function() case[3](v, res_server, ws_server) end, case[1] .. " " .. case[2] .. " = " .. tostring(v))
        if not res_server.done then res_server:text("ok") end
        sock.close(fd)
      end
    end
    assert.is_false(ws_server.closed)
  end)
end)

describe("the queue of wakeups", function()
  it("is bounded by max_threadsafe_bytes: LIMIT when full, everything accepted arrives", function()
    local mgr = assert(lm.new({ max_threadsafe_bytes = 4096, max_connections = 10 }))
    local got = {}
    mgr:on("wakeup", function(id, data) got[#got + 1] = id end)
    local data = string.rep("d", 100)
    local accepted, ok, err, name = 0, true, nil, nil
    for i = 1, 1000 do
      ok, err, name = mgr:wakeup(i, data)
      if not ok then break end
      accepted = accepted + 1
    end
    assert.is_nil(ok)
    assert.equal("LIMIT", name)
    assert.matches("^LIMIT: ", err)
    assert.is_true(accepted > 0 and accepted < 1000)
    H.run_until(mgr, function() return #got == accepted end)
    assert.equal(accepted, #got)
    for i = 1, accepted do assert.equal(i, got[i]) end
    assert.is_true(mgr:wakeup(1, data)) -- room again
    mgr:close()
  end)
end)

describe("a reply after the client reset", function()
  local mgr
  before_each(function() mgr = assert(lm.new()) end)
  after_each(function() mgr:close() end)

  local dir
  local REPLIES = {
    text = function(res) return res:text("late") end,
    send = function(res) return res:send(string.rep("x", 1024 * 1024)) end,
    json = function(res) return res:json({ late = true }) end,
    html = function(res) return res:html("<p>late</p>") end,
    redirect = function(res) return res:redirect("/elsewhere") end,
    write = function(res) return res:write("late") end,
    finish = function(res) return res:finish("late") end,
    file = function(res) return res:file(dir .. "/a.txt") end,
    dir = function(res) return res:dir(dir) end,
    upgrade = function(res) return res:upgrade() end,
  }

  for name, reply in pairs(REPLIES) do
    it("res:" .. name .. " returns nil, \"CLOSED: ...\", \"CLOSED\"", function()
      dir = H.tmpdir() .. "/late"
      os.execute("mkdir -p " .. dir)
      H.write_file(dir .. "/a.txt", "hello\n")
      local pending, closed
      local l = assert(mgr:listen("http://127.0.0.1:0", {
        http = function(_, res) pending = res end,
        close = function(c) if c.kind ~= "listener" then closed = true end end,
      }))
      local fd = sock.connect(l:port())
      sock.send(fd, name == "upgrade" and UPGRADE or "GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
      assert.truthy(H.run_until(mgr, function() return pending end))
      sock.reset(fd)
      assert.is_true(H.run_until(mgr, function() return closed end))
      local ok, err, ename = reply(pending)
      assert.is_nil(ok)
      assert.equal("CLOSED", ename)
      assert.matches("^CLOSED: ", err)
      assert.is_true(pending.done)
      -- a second answer is still misuse
      misuse({ "text: the response was already sent" }, function() pending:text("again") end)
    end)
  end

  it("conn:close and conn:abort stay harmless on a connection the peer reset", function()
    local server, closed
    local l = assert(mgr:listen("tcp://127.0.0.1:0", {
      accept = function(c) server = c end,
      close = function(c) if c == server then closed = true end end,
    }))
    local fd = sock.connect(l:port())
    H.run_until(mgr, function() return server end)
    sock.reset(fd)
    -- before and after the close event
    H.run_until(mgr, function() return closed end)
    assert.is_true(closed)
    assert.is_true(server:close())
    assert.is_true(server:abort())
  end)
end)

describe("read-only fields", function()
  local mgr
  before_each(function() mgr = assert(lm.new()) end)
  after_each(function() mgr:close() end)

  it("a connection's id and the fields the module relies on cannot be assigned", function()
    local accepted
    local l = assert(mgr:listen("tcp://127.0.0.1:0", { accept = function(c) accepted = c end }))
    local c = assert(mgr:connect("tcp://127.0.0.1:" .. l:port()))
    H.run_until(mgr, function() return accepted end)
    local id = c.id
    for _, k in ipairs({ "id", "kind", "closed", "listener", "url", "client" }) do
      misuse({ "'" .. k .. "'", "read-only" }, function() c[k] = 12345 end, "conn." .. k)
    end
    misuse({ "'id'", "read-only" }, function() accepted.id = c.id end)
    misuse({ "'listener'", "read-only" }, function() accepted.listener = nil end)
    misuse({ "'scheme'", "read-only" }, function() l.scheme = "udp" end)
    assert.equal(id, c.id)
    assert.equal("tcp", c.kind)
    assert.is_false(c.closed)
    assert.equal(l, accepted.listener)
    -- the program's own fields and data stay writable
    c.data.n = 1
    c.mine = "yes"
    assert.equal("yes", c.mine)
    -- and the connection still works
    local got
    accepted:on("read", function(_, d) got = d end)
    assert(c:send("ping"))
    H.run_until(mgr, function() return got end)
    assert.equal("ping", got)
  end)

  it("a timer's id, active and repeating cannot be assigned", function()
    local a = assert(mgr:timer(100000))
    local b = assert(mgr:timer(100000))
    for _, k in ipairs({ "id", "active", "repeating" }) do
      misuse({ "'" .. k .. "'", "read-only" }, function() a[k] = b[k] end, "timer." .. k)
    end
    assert.is_true(a:cancel())
    assert.is_true(b.active)
    assert.is_true(b:cancel())
  end)
end)

describe("error messages", function()
  local mgr
  before_each(function() mgr = assert(lm.new()) end)
  after_each(function() mgr:close(); uv.run("nowait") end)

  it("quote at most 64 bytes of an offending value", function()
    local big = string.rep("x", 1024 * 1024)
    local cases = {
      function() mgr:listen("http://127.0.0.1:0", { [big] = 1 }) end,
      function() mgr:connect("tcp://127.0.0.1:1", { [big] = 1 }) end,
      function() lm.new({ [big] = 1 }) end,
      function() mgr:on(big, print) end,
      function() lm.router():get(big, print) end,
      function() lm.router():use(big, print) end,
      function() mgr:listen("http://127.0.0.1:0", { max_body_bytes = big }) end,
      function() mgr:listen("https://127.0.0.1:0", { tls = { [big] = 1 } }) end,
      function() mgr:connect("tls://127.0.0.1:1", { tls = { [big] = 1 } }) end,
      function() mgr:attach(uv, { [big] = 1 }) end,
      function() lm.router():ws("/x", { [big] = 1 }) end,
      function() lm.static("/tmp", { [big] = 1 }) end,
      function() mgr:connect("ws://127.0.0.1:1", { ws_headers = { [big .. " "] = "v" } }) end,
      function() mgr:connect("ws://127.0.0.1:1", { ws_headers = big .. " \r\n" }) end,
    }
    local pending
    local l = assert(mgr:listen("http://127.0.0.1:0", { http = function(_, res) pending = res end }))
    local fd = sock.connect(l:port())
    sock.send(fd, GET)
    H.run_until(mgr, function() return pending end)
    local res_cases = {
      function() pending:status(big) end,
      function() pending:set(big .. " ", "v") end,
      function() pending:set({ [big .. "\n"] = "v" }) end,
      function() pending:upgrade({ [big] = 1 }) end,
      function() pending:file("/x", { [big] = 1 }) end,
    }
    for _, f in ipairs(res_cases) do cases[#cases + 1] = f end
    for i, f in ipairs(cases) do
      local ok, err = pcall(f)
      assert(not ok, "#" .. i .. ": no error")
      err = tostring(err)
      assert(#err < 400, "#" .. i .. ": a message of " .. #err .. " bytes: " .. err:sub(1, 200))
      assert(not err:find(string.rep("x", 65), 1, true), "#" .. i .. ": more than 64 bytes quoted: " .. err:sub(1, 200))
    end
    pending:text("ok")
    sock.close(fd)
  end)
end)
