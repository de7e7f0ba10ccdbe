-- The misuse matrix: every misuse raises a Lua error that names the function (and
-- points at the caller's line), every runtime failure returns nil, err; the process
-- survives all of it and still serves afterwards.
local H = require("helpers")
local lm = H.lm
local ffi = require("ffi")

local THIS = "[^:]*misuse_spec%.lua:%d+: "

-- fn must raise an error whose message matches `pattern`, reported at the caller's line.
local function misuse(pattern, fn)
  local ok, err = pcall(fn)
  assert(not ok, "no error raised (expected " .. pattern .. ")")
  err = tostring(err)
  assert(err:match("^" .. THIS), "error not reported at the caller: " .. err)
  assert(err:match(pattern), "error '" .. err .. "' does not match '" .. pattern .. "'")
end

describe("misuse", function()
  local mgr, l, tcp_server, tcp_client, http_conn, udp

  before_each(function()
    mgr = assert(lm.new())
    l = assert(mgr:listen("http://127.0.0.1:0", { http = function(req) http_conn = req.conn end }))
    tcp_server = nil
    local tl = assert(mgr:listen("tcp://127.0.0.1:0", { accept = function(c) tcp_server = c end }))
    tcp_client = assert(mgr:connect("tcp://127.0.0.1:" .. tl:port()))
    udp = assert(mgr:listen("udp://127.0.0.1:0"))
    H.run_until(mgr, function() return tcp_server end)
  end)
  after_each(function() mgr:close() end)

  it("wrong argument types to the module functions", function()
    misuse("new: bad argument 'opts' %(table expected, got string%)", function() lm.new("x") end)
    misuse("new: unknown option 'bogus'", function() lm.new({ bogus = 1 }) end)
    misuse("new: bad handler 'http' %(function expected, got number%)", function() lm.new({ http = 1 }) end)
    misuse("new: bad option 'max_connections'", function() lm.new({ max_connections = -1 }) end)
    misuse("base64_encode: bad argument 's' %(string expected, got nil%)", function() lm.base64_encode() end)
    misuse("base64_decode: bad argument 's' %(string expected, got number%)", function() lm.base64_decode(5) end)
    misuse("hex: bad argument 's'", function() lm.hex({}) end)
    misuse("crc32: bad argument 'crc'", function() lm.crc32("x", -1) end)
    misuse("crc32: bad argument 'crc'", function() lm.crc32("x", 2 ^ 32) end)
    misuse("md5: bad argument 's'", function() lm.md5(nil) end)
    misuse("md5_hex: bad argument 's'", function() lm.md5_hex(true) end)
    misuse("sha1: bad argument 's'", function() lm.sha1(1) end)
    misuse("sha1_hex: bad argument 's'", function() lm.sha1_hex() end)
    misuse("url_decode: bad argument 's'", function() lm.url_decode(nil) end)
    misuse("url_encode: bad argument 's'", function() lm.url_encode(nil) end)
    misuse("parse_query: bad argument 'qs'", function() lm.parse_query(1) end)
    misuse("static: bad argument 'root'", function() lm.static(nil) end)
    misuse("static: unknown option 'bogus'", function() lm.static("/tmp", { bogus = true }) end)
  end)

  it("wrong argument types to manager methods", function()
    misuse("listen: bad argument 'url' %(string expected, got number%)", function() mgr:listen(80) end)
    misuse("listen: bad argument 'opts' %(table expected, got string%)", function() mgr:listen("http://127.0.0.1:0", "x") end)
    misuse("listen: unknown option 'max_body'", function() mgr:listen("http://127.0.0.1:0", { max_body = 1 }) end)
    misuse("listen: bad option 'max_body_bytes' %(non%-negative integer expected", function()
      mgr:listen("http://127.0.0.1:0", { max_body_bytes = -5 })
    end)
    misuse("listen: bad option 'idle_timeout_ms'", function() mgr:listen("http://127.0.0.1:0", { idle_timeout_ms = 1.5 }) end)
    misuse("listen: bad option 'reuse_port' %(boolean expected, got number%)", function()
      mgr:listen("http://127.0.0.1:0", { reuse_port = 1 })
    end)
    misuse("listen: bad option 'ws_protocols'", function() mgr:listen("http://127.0.0.1:0", { ws_protocols = 1 }) end)
    misuse("listen: bad option 'tls' %(table expected", function() mgr:listen("https://127.0.0.1:0", { tls = "x" }) end)
    misuse("listen: unknown option 'tls.password'", function() mgr:listen("https://127.0.0.1:0", { tls = { password = "x" } }) end)
    misuse("listen: bad option 'tls.verify'", function() mgr:listen("https://127.0.0.1:0", { tls = { verify = "maybe" } }) end)
    misuse("listen: bad option 'tls.sni'", function() mgr:listen("https://127.0.0.1:0", { tls = { sni = { 1 } } }) end)
    misuse("listen: bad handler 'read' %(function expected, got string%)", function()
      mgr:listen("tcp://127.0.0.1:0", { read = "print" })
    end)
    misuse("connect: bad argument 'url'", function() mgr:connect(nil) end)
    misuse("connect: unknown option 'tls.insecure'", function() mgr:connect("tls://127.0.0.1:1", { tls = { insecure = true } }) end)
    misuse("connect: bad option 'tls.verify' %(boolean expected%)", function() mgr:connect("tls://127.0.0.1:1", { tls = { verify = "no" } }) end)
    misuse("connect: bad header name in option 'ws_headers'", function() mgr:connect("tcp://127.0.0.1:1", { ws_headers = { [1] = true } }) end)
    misuse("poll: bad argument 'ms' %(number expected, got string%)", function() mgr:poll("10") end)
    misuse("events: bad argument 'ms'", function() mgr:events({}) end)
    misuse("run: bad argument 'ms'", function() mgr:run("x") end)
    misuse("timer: bad argument 'ms'", function() mgr:timer(-1) end)
    misuse("timer: bad argument 'ms'", function() mgr:timer("5") end)
    misuse("timer: bad argument 'ms'", function() mgr:timer(1e300) end)
    misuse("timer: bad argument 'ms'", function() mgr:timer(0 / 0) end)
    misuse("wakeup: bad argument 'id'", function() mgr:wakeup(2 ^ 60) end)
    misuse("listen: bad option 'max_body_bytes'", function() mgr:listen("http://127.0.0.1:0", { max_body_bytes = 1e300 }) end)
    misuse("timer: bad argument 'fn' %(function expected, got string%)", function() mgr:timer(5, "f") end)
    misuse("timer: bad argument 'repeating' %(boolean expected", function() mgr:timer(5, nil, 1) end)
    misuse("wakeup: bad argument 'id'", function() mgr:wakeup(-1) end)
    misuse("wakeup: bad argument 'data'", function() mgr:wakeup(1, {}) end)
    misuse("on: unknown handler name 'htp'", function() mgr:on("htp", print) end)
    misuse("on: bad argument 'fn' %(function expected, got number%)", function() mgr:on("http", 1) end)
    misuse("attach: bad argument 'uv' %(luv module expected", function() mgr:attach({}) end)
  end)

  it("methods called with a dot, and plain functions on the wrong object", function()
    misuse("listen: bad argument 'mgr' %(manager expected, got string%)", function() mgr.listen("http://127.0.0.1:0") end)
    misuse("poll: bad argument 'mgr' %(manager expected, got nil%)", function() lm.poll() end)
    misuse("listen: bad argument 'mgr' %(manager expected, got listener%)", function() lm.listen(l, "x") end)
    misuse("send: bad argument 'conn' %(connection expected, got manager%)", function() lm.send(mgr, "x") end)
    misuse("close: bad argument #1 %(manager, connection, timer or attachment expected, got string%)", function()
      lm.close("x")
    end)
    misuse("on: bad argument #1", function() lm.on(42, "http", print) end)
    misuse("cancel: bad argument 'timer' %(timer expected, got table%)", function() lm.cancel({}) end)
    misuse("peer: bad argument 'conn' %(connection expected, got number%)", function() lm.peer(1) end)
  end)

  it("a closed manager: every method raises, closing again is harmless", function()
    local m2 = assert(lm.new())
    local l2 = assert(m2:listen("tcp://127.0.0.1:0"))
    local t2 = assert(m2:timer(1000))
    assert.is_true(m2:close())
    assert.is_true(m2:close())
    assert.is_true(lm.close(m2))
    assert.is_false(m2:is_open())
    misuse("poll: the manager is closed", function() m2:poll(0) end)
    misuse("listen: the manager is closed", function() m2:listen("tcp://127.0.0.1:0") end)
    misuse("connect: the manager is closed", function() m2:connect("tcp://127.0.0.1:1") end)
    misuse("events: the manager is closed", function() m2:events(0) end)
    misuse("run: the manager is closed", function() m2:run() end)
    misuse("timer: the manager is closed", function() m2:timer(1) end)
    misuse("fd: the manager is closed", function() m2:fd() end)
    misuse("next_timeout: the manager is closed", function() m2:next_timeout() end)
    misuse("wakeup: the manager is closed", function() m2:wakeup(1) end)
    misuse("on: the manager is closed", function() m2:on("http", print) end)
    misuse("attach: the manager is closed", function() m2:attach() end)
    misuse("port: the manager of listener %d+ %(tcp://127%.0%.0%.1:0%) is closed", function() l2:port() end)
    misuse("send: the manager of .* is closed", function() l2:send("x") end)
    assert.is_true(l2:close()) -- harmless
    assert.is_true(l2:abort())
    assert.is_true(l2.closed)
    assert.is_false(t2:cancel())
    assert.is_true(m2:stop())
    assert.is_true(m2:detach())
  end)

  it("a closed connection raises after its close event, close stays harmless", function()
    local closed = false
    tcp_client:on("close", function() closed = true end)
    assert.is_true(tcp_client:close())
    assert.is_true(tcp_client:close()) -- twice, before the close event
    H.run_until(mgr, function() return closed end)
    assert.is_true(tcp_client.closed)
    misuse("send: connection %d+ %(tcp%) is closed", function() tcp_client:send("x") end)
    misuse("peer: connection %d+ %(tcp%) is closed", function() tcp_client:peer() end)
    misuse("local_address: connection %d+ %(tcp%) is closed", function() tcp_client:local_address() end)
    misuse("buffered: connection %d+ %(tcp%) is closed", function() tcp_client:buffered() end)
    misuse("tls_info: connection %d+ %(tcp%) is closed", function() tcp_client:tls_info() end)
    misuse("on: connection %d+ %(tcp%) is closed", function() tcp_client:on("read", print) end)
    misuse("ping: connection %d+ %(tcp%) is closed", function() tcp_client:ping() end)
    assert.is_true(tcp_client:close())
    assert.is_true(tcp_client:abort())
    -- a closed listener
    local l3 = assert(mgr:listen("tcp://127.0.0.1:0"))
    l3:close()
    H.run_until(mgr, function() return l3.closed end)
    misuse("port: listener %d+ .* is closed", function() l3:port() end)
  end)

  it("WebSocket calls on connections that are not WebSocket connections", function()
    misuse("send: a message kind applies only to WebSocket connections", function() tcp_server:send("x", "text") end)
    misuse("send_fragment: connection %d+ %(tcp%) is not a WebSocket connection", function()
      tcp_server:send_fragment("x", "text", true)
    end)
    misuse("ping: connection %d+ %(tcp%) is not a WebSocket connection", function() tcp_server:ping("x") end)
    misuse("pong: connection %d+ %(tcp%) is not a WebSocket connection", function() tcp_client:pong() end)
    misuse("close: a close code and reason apply only to WebSocket connections", function() tcp_server:close(1000) end)
    misuse("broadcast: connection %d+ %(tcp%) is not a listener", function() tcp_server:broadcast("x") end)
    misuse("broadcast: listener %d+ %(udp://.*%) does not accept WebSocket connections", function() udp:broadcast("x") end)
    misuse("send: cannot send on listener", function() l:send("x") end)
    misuse("send_to: connection %d+ %(tcp%) is not a udp listener", function() tcp_server:send_to("127.0.0.1:1", "x") end)
    misuse("port: connection %d+ %(tcp%) is not a listener", function() tcp_server:port() end)
    -- an HTTP connection is answered through its response, not sent on
    http_conn = nil
    H.raw_request(mgr, l:port(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n", function() return http_conn ~= nil end)
    assert.truthy(http_conn)
    misuse("send: connection %d+ %(http%) is not a WebSocket or tcp connection", function() http_conn:send("x") end)
    misuse("ping: connection %d+ %(http%) is not a WebSocket connection", function() http_conn:ping() end)
    misuse("send: bad argument 'data' %(string expected, got number%)", function() tcp_server:send(5) end)
    misuse("send_to: bad argument 'addr'", function() udp:send_to(nil, "x") end)
    misuse("send_to: bad argument 'data'", function() udp:send_to("127.0.0.1:1", nil) end)
    misuse("on: unknown handler name 'message'", function() tcp_server:on("message", print) end)
  end)

  it("WebSocket calls with wrong arguments", function()
    local server
    local wl = assert(mgr:listen("ws://127.0.0.1:0", { ws_open = function(c) server = c end }))
    local opened = false
    local c = assert(mgr:connect("ws://127.0.0.1:" .. wl:port(), { ws_open = function() opened = true end }))
    H.run_until(mgr, function() return opened and server end)
    misuse("send: bad argument 'data' %(string expected, got number%)", function() c:send(1) end)
    misuse("send: bad argument 'kind' %(\"text\" or \"binary\" expected, got string%)", function() c:send("x", "utf8") end)
    misuse("send_fragment: bad argument 'data'", function() c:send_fragment(nil) end)
    misuse("send_fragment: bad argument 'kind'", function() c:send_fragment("x", "ping") end)
    misuse("send_fragment: bad argument 'fin' %(boolean expected, got number%)", function() c:send_fragment("x", "text", 1) end)
    misuse("ping: bad argument 'data'", function() c:ping({}) end)
    misuse("pong: bad argument 'data'", function() server:pong(1) end)
    misuse("close: bad argument 'code' %(integer close code expected, got string%)", function() c:close("1000") end)
    misuse("close: bad argument 'reason'", function() c:close(1000, 5) end)
    misuse("broadcast: connection %d+ %(ws%) is not a listener", function() server:broadcast("x") end)
    misuse("broadcast: bad argument 'data'", function() wl:broadcast(nil) end)
    misuse("broadcast: bad argument 'kind'", function() mgr:broadcast("x", "ping") end)
    misuse("send_to: connection %d+ %(ws%) is not a udp listener", function() c:send_to("127.0.0.1:1", "x") end)
    -- runtime failures stay nil, err
    local ok, err, name = c:send("\255")
    assert.is_nil(ok)
    assert.equal("INVALID_ARGUMENT", name)
    assert.matches("^INVALID_ARGUMENT: ", err)
    c:close()
    H.run_until(mgr, function() return c.closed end)
    misuse("send: connection %d+ %(ws%) is closed", function() c:send("x") end)
    misuse("send_fragment: connection %d+ %(ws%) is closed", function() c:send_fragment("x") end)
    assert.is_true(c:close(1000))
  end)

  it("responses: double replies, bad statuses and headers, unencodable JSON", function()
    local results = {}
    local l2 = assert(mgr:listen("http://127.0.0.1:0", {
      http = function(req, res)
        local function try(f) local ok, e = pcall(f); results[#results + 1] = ok and "ok" or e end
        try(function() res:status(99) end)
        try(function() res:status("200") end)
        try(function() res:set(1, "x") end)
        try(function() res:set("X", {}) end)
        try(function() res:set("Bad Name", "x") end)
        try(function() res:set("X", "a\nb") end)
        try(function() res:append("X") end)
        try(function() res:type(nil) end)
        try(function() res:json({ f = print }) end)
        try(function() res:text(5) end)
        try(function() res:html() end)
        try(function() res:file(nil) end)
        try(function() res:dir(nil) end)
        try(function() res:dir("/tmp", { bogus = 1 }) end)
        try(function() res:redirect(nil) end)
        try(function() res:write(nil) end)
        try(function() req:header(5) end)
        assert(res:text("first"))
        try(function() res:text("second") end)
        try(function() res:status(200) end)
        try(function() res:write("x") end)
        try(function() res:finish() end)
        try(function() res:upgrade() end)
        try(function() lm.Response.text({}, "x") end)
      end,
    }))
    local st, _, body = H.request(mgr, l2:port(), "GET", "/")
    assert.same({ 200, "first" }, { st, body })
    local expect = {
      "status: bad argument 'code' %(integer 100%-599 expected, got 99%)",
      "status: bad argument 'code'",
      "set: bad argument 'name' %(string expected, got number%)",
      "set: bad argument 'value' %(string expected, got table%)",
      "set: bad header name \"Bad Name\"",
      "set: bad value for header \"X\" %(CR, LF, NUL or another control character",
      "append: bad argument 'value'",
      "type: bad argument 'ctype'",
      "json: cannot encode the value",
      "text: bad argument 'body'",
      "html: bad argument 'body'",
      "file: bad argument 'path'",
      "dir: bad argument 'root'",
      "dir: unknown option 'bogus'",
      "redirect: bad argument 'location'",
      "write: bad argument 'data'",
      "header: bad argument 'name'",
      "text: the response was already sent",
      "status: the response was already sent",
      "write: the response was already sent",
      "finish: the response was already sent",
      "upgrade: the response was already sent",
      "text: bad argument 'res' %(response expected, got table%)",
    }
    assert.equal(#expect, #results)
    for i, pat in ipairs(expect) do
      assert(results[i]:match(pat), "#" .. i .. ": '" .. results[i] .. "' does not match '" .. pat .. "'")
      assert(results[i]:match("^" .. THIS), "#" .. i .. " not reported at the caller: " .. results[i])
    end
  end)

  it("router misuse", function()
    local app = lm.router()
    misuse("get: bad argument 'path' %(string starting with \"/\" expected, got \"users\"%)", function()
      app:get("users", print)
    end)
    misuse("post: no handler given", function() app:post("/x") end)
    misuse("put: bad handler #2 %(function expected, got number%)", function() app:put("/x", print, 5) end)
    misuse("use: bad argument 'fn' %(function or router expected, got number%)", function() app:use("/x", 5) end)
    misuse("ws: bad argument 'handlers'", function() app:ws("/ws", print) end)
    misuse("ws: unknown handler or option 'onmessage'", function() app:ws("/ws", { onmessage = print }) end)
    misuse("not_found: bad argument 'fn'", function() app:not_found(5) end)
    misuse("on_error: bad argument 'fn'", function() app:on_error(nil) end)
    misuse("static: bad argument 'root'", function() app:static("/s", nil) end)
    misuse("get: bad argument 'app' %(router expected, got table%)", function() lm.Router.get({}, "/x", print) end)
  end)

  it("luv attach misuse", function()
    local uv = require("luv")
    misuse("attach: bad option 'mode'", function() mgr:attach(uv, { mode = "busy" }) end)
    misuse("attach: unknown option 'every'", function() mgr:attach(uv, { every = 5 }) end)
    local a = assert(mgr:attach(uv))
    misuse("attach: the manager is already attached", function() mgr:attach(uv) end)
    assert.is_true(a:detach())
    assert.is_true(a:detach())
    misuse("detach: bad argument 'handle'", function() lm.Attachment.detach({}) end)
    uv.run("nowait")
  end)

  it("the raw binding answers a freed manager without crashing", function()
    local C = lm.C
    local p = C.wss_mgr_new(nil)
    C.wss_mgr_free(p)
    C.wss_mgr_free(p) -- twice: harmless
    local id = ffi.new("wss_id[1]")
    assert.equal(lm.RESULTS.FREED, C.wss_mgr_poll(p, 0, nil))
    assert.equal(lm.RESULTS.FREED, C.wss_mgr_listen(p, "tcp://127.0.0.1:0", nil, id))
    assert.equal(lm.RESULTS.FREED, C.wss_conn_send(p, 1, "x", 1))
    assert.equal(-1, C.wss_mgr_fd(p))
    assert.equal("manager was freed", ffi.string(C.wss_mgr_last_error(p)))
    assert.is_false(C.wss_mgr_next_event(p, ffi.new("wss_event[1]")))
    -- stale and unknown ids on a live manager
    local q = C.wss_mgr_new(nil)
    assert.equal(lm.RESULTS.NOT_FOUND, C.wss_conn_send(q, 12345, "x", 1))
    assert.equal(lm.RESULTS.NOT_FOUND, C.wss_conn_close(q, 0, true))
    C.wss_mgr_free(q)
  end)

  it("the process survives all of the above and still serves", function()
    local l2 = assert(mgr:listen("http://127.0.0.1:0", { http = function(_, res) res:text("alive") end }))
    local st, _, body = H.request(mgr, l2:port(), "GET", "/")
    assert.same({ 200, "alive" }, { st, body })
  end)
end)
