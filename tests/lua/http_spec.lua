-- HTTP through the raw handlers: request objects, replies, chunked bodies, static
-- files, the event iterator, run/stop. Clients: curl and the library's tcp client.
local H = require("helpers")
local lm = H.lm

describe("http", function()
  local mgr, port, last

  before_each(function()
    mgr = assert(lm.new())
    local l = assert(mgr:listen("http://127.0.0.1:0", {
      http = function(req, res)
        last = req
        if req.path == "/echo" then
          res:status(201):set("X-Method", req.method):set("X-Len", #req.body):text(req.body)
        elseif req.path == "/json" then
          res:json({ method = req.method, query = req.query, ua = req.headers["USER-AGENT"] })
        elseif req.path == "/html" then
          res:html("<p>hi</p>")
        elseif req.path == "/stream" then
          res:set("X-Stream", "yes")
          for i = 1, 5 do assert(res:write("part" .. i .. ";")) end
          assert(res:finish("end"))
        elseif req.path == "/later" then
          mgr:timer(20, function() res:text("late answer") end)
        elseif req.path == "/redirect" then
          res:redirect("/json")
        elseif req.path == "/cookies" then
          res:append("Set-Cookie", "a=1"):append("Set-Cookie", "b=2"):send("ok")
        else
          res:status(404):send("nope")
        end
      end,
    }))
    port = l:port()
  end)

  after_each(function()
    mgr:close()
  end)

  it("gives requests as Lua values", function()
    local st, h, body = H.curl(mgr, string.format(
      "-X POST -H 'X-Custom: One' -H 'x-custom: Two' -H 'Content-Type: text/plain' --data-binary 'hello body' 'http://127.0.0.1:%d/echo?a=1&b=x%%20y'",
      port))
    assert.equal(201, st)
    assert.equal("hello body", body)
    assert.equal("POST", h["x-method"])
    assert.equal("10", h["x-len"])
    assert.equal("POST", last.method)
    assert.equal("/echo", last.path)
    assert.equal("/echo?a=1&b=x%20y", last.target)
    assert.equal("a=1&b=x%20y", last.query_string)
    assert.same({ a = "1", b = "x y" }, last.query)
    assert.equal("HTTP/1.1", last.version)
    assert.equal("hello body", last.body)
    -- headers are case-insensitive; repeated ones are joined
    assert.equal("One, Two", last.headers["x-custom"])
    assert.equal("One, Two", last.headers["X-CUSTOM"])
    assert.equal("One, Two", last:header("X-Custom"))
    assert.equal("text/plain", last.headers["Content-Type"])
    assert.is_nil(last.headers["missing"])
    -- header_list keeps the lines in arrival order with their case
    local names = {}
    for _, kv in ipairs(last.header_list) do names[#names + 1] = kv[1] end
    assert.truthy(table.concat(names, ","):find("X-Custom,x-custom", 1, true))
    assert.equal(last.conn, last.conn) -- the connection object
    assert.equal("connection", tostring(last.conn):match("^(%a+)"))
  end)

  it("replies JSON, HTML, text with the right content types", function()
    local st, h, body = H.curl(mgr, string.format("-A lm-test 'http://127.0.0.1:%d/json?x=1&x=2'", port))
    assert.equal(200, st)
    assert.equal("application/json", h["content-type"])
    local j = require("cjson").decode(body)
    assert.same({ method = "GET", query = { x = { "1", "2" } }, ua = "lm-test" }, j)
    st, h, body = H.request(mgr, port, "GET", "/html")
    assert.equal(200, st)
    assert.equal("text/html; charset=utf-8", h["content-type"])
    assert.equal("<p>hi</p>", body)
  end)

  it("streams chunked bodies", function()
    local st, h, body = H.request(mgr, port, "GET", "/stream")
    assert.equal(200, st)
    assert.equal("chunked", h["transfer-encoding"])
    assert.equal("yes", h["x-stream"])
    assert.equal("part1;part2;part3;part4;part5;end", body)
    st, h, body = H.curl(mgr, string.format("http://127.0.0.1:%d/stream", port))
    assert.equal("part1;part2;part3;part4;part5;end", body)
  end)

  it("answers later, from a timer", function()
    local st, _, body = H.request(mgr, port, "GET", "/later")
    assert.equal(200, st)
    assert.equal("late answer", body)
  end)

  it("redirects and sends repeated headers", function()
    local st, h = H.request(mgr, port, "GET", "/redirect")
    assert.equal(302, st)
    assert.equal("/json", h["location"])
    local st2, h2, body2 = H.curl(mgr, string.format("-L http://127.0.0.1:%d/redirect", port))
    assert.equal(200, st2)
    assert.equal("application/json", h2["content-type"])
    assert.truthy(body2:find('"method":"GET"', 1, true))
    local raw = H.raw_request(mgr, port, "GET /cookies HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert.truthy(raw:find("Set-Cookie: a=1\r\n", 1, true))
    assert.truthy(raw:find("Set-Cookie: b=2\r\n", 1, true))
  end)

  it("answers HEAD without a body", function()
    local st, h = H.request(mgr, port, "HEAD", "/json")
    assert.equal(200, st)
    assert.is_truthy(tonumber(h["content-length"]) > 0)
  end)

  it("keeps the connection alive and pipelines", function()
    local req = "GET /html HTTP/1.1\r\nHost: x\r\n\r\nGET /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
    local raw = H.raw_request(mgr, port, req, function(d)
      local _, _, _, rest = H.parse_response(d)
      return rest and H.parse_response(rest) ~= nil
    end)
    local st1, _, b1, rest = H.parse_response(raw)
    local st2, _, b2 = H.parse_response(rest)
    assert.same({ 200, "<p>hi</p>", 201, "abc" }, { st1, b1, st2, b2 })
  end)

  it("gives a 404 when no http handler is set", function()
    local l2 = assert(mgr:listen("http://127.0.0.1:0"))
    local st, _, body = H.request(mgr, l2:port(), "GET", "/")
    assert.equal(404, st)
    assert.equal("Not Found\n", body)
  end)

  it("refuses header injection and returns nil, err for a header the library refuses", function()
    local got = {}
    local l2 = assert(mgr:listen("http://127.0.0.1:0", {
      http = function(req, res)
        got.inject = { pcall(res.set, res, "X-Bad", "a\r\nInjected: yes") }
        got.badname = { pcall(res.set, res, "Bad Name", "x") }
        got.ok = res:text("fine")
      end,
    }))
    local st, h, body = H.request(mgr, l2:port(), "GET", "/")
    assert.equal(200, st)
    assert.equal("fine", body)
    assert.is_nil(h["injected"])
    assert.is_false(got.inject[1])
    assert.matches("set: bad value for header \"X%-Bad\"", got.inject[2])
    assert.is_false(got.badname[1])
    assert.truthy(got.ok)
  end)

  it("returns nil, err when the connection is closing, and raises once it is closed", function()
    local pending
    local l2 = assert(mgr:listen("http://127.0.0.1:0", { http = function(_, res) pending = res end }))
    local c = assert(mgr:connect("tcp://127.0.0.1:" .. l2:port(), {
      connect = function(c) c:send("GET / HTTP/1.1\r\nHost: x\r\n\r\n") end,
    }))
    H.run_until(mgr, function() return pending end)
    local closed = false
    pending.conn:on("close", function() closed = true end)
    assert.is_true(pending.conn:abort())
    -- closed by us, its close event not yet handled: a runtime failure
    local ok, err, name = pending:text("too late")
    assert.is_nil(ok)
    assert.equal("CLOSED", name)
    assert.matches("^CLOSED: ", err)
    H.run_until(mgr, function() return closed end)
    assert.is_true(closed)
    assert.is_true(pending.conn.closed)
    -- after the close event, using the connection is misuse
    assert.has_error(function() pending.conn:send("x") end, "send: connection " .. pending.conn.id .. " (http) is closed")
    c:close()
  end)

  it("serves files and directories", function()
    local d = H.tmpdir() .. "/www"
    os.execute("mkdir -p " .. d .. "/sub")
    H.write_file(d .. "/index.html", "<h1>index</h1>")
    H.write_file(d .. "/a.txt", "alpha")
    H.write_file(d .. "/sub/b.md", "# bee")
    local l2 = assert(mgr:listen("http://127.0.0.1:0", {
      http = function(req, res)
        if req.path == "/file" then
          assert(res:file(d .. "/a.txt", { headers = { ["Cache-Control"] = "max-age=5" } }))
        else
          assert(res:dir(d, { mime_types = { md = "text/markdown" } }))
        end
      end,
    }))
    local p = l2:port()
    local st, h, body = H.curl(mgr, "http://127.0.0.1:" .. p .. "/")
    assert.same({ 200, "<h1>index</h1>" }, { st, body })
    assert.truthy(h["content-type"]:find("text/html", 1, true))
    st, h, body = H.curl(mgr, "http://127.0.0.1:" .. p .. "/sub/b.md")
    assert.same({ 200, "# bee", "text/markdown" }, { st, body, h["content-type"] })
    st, h, body = H.curl(mgr, "http://127.0.0.1:" .. p .. "/file")
    assert.same({ 200, "alpha", "max-age=5" }, { st, body, h["cache-control"] })
    st, h, body = H.curl(mgr, "-r 1-3 http://127.0.0.1:" .. p .. "/a.txt")
    assert.same({ 206, "lph" }, { st, body })
    st = H.curl(mgr, "--path-as-is http://127.0.0.1:" .. p .. "/../../etc/passwd")
    assert.equal(403, st)
    st = H.curl(mgr, "http://127.0.0.1:" .. p .. "/missing")
    assert.equal(404, st)
    st, h = H.curl(mgr, "http://127.0.0.1:" .. p .. "/sub")
    assert.equal(301, st)
  end)

  it("iterates over raw events", function()
    local m2 = assert(lm.new())
    local l2 = assert(m2:listen("http://127.0.0.1:0"))
    local names = {}
    local proc = H.spawn(string.format("curl -s --max-time 5 http://127.0.0.1:%d/raw", l2:port()))
    local deadline = H.now() + 5000
    while not proc:done() and H.now() < deadline do
      for ev in m2:events(10) do
        names[#names + 1] = ev.name
        if ev.name == "HTTP_MSG" then
          assert.equal("/raw", ev.req.path)
          assert.equal(ev.conn, ev.req.conn)
          assert.equal(l2, ev.parent)
          ev.res:text("raw ok")
        end
      end
    end
    assert.equal("raw ok", proc.out)
    local s = table.concat(names, " ")
    assert.truthy(s:find("LISTEN", 1, true))
    assert.truthy(s:find("ACCEPT", 1, true))
    assert.truthy(s:find("HTTP_MSG", 1, true))
    m2:close()
  end)

  it("runs until stopped", function()
    local m2 = assert(lm.new())
    local l2 = assert(m2:listen("http://127.0.0.1:0", {
      http = function(_, res)
        res:text("bye")
        m2:stop()
      end,
    }))
    local proc = H.spawn(string.format("curl -s --max-time 5 http://127.0.0.1:%d/", l2:port()))
    local guard = m2:timer(5000, function() m2:stop() end) -- bounded
    local t0 = H.now()
    assert.is_true(m2:run(50))
    assert.is_true(H.now() - t0 < 5000)
    guard:cancel()
    H.run_until(m2, function() return proc:done() end)
    assert.equal("bye", proc.out)
    m2:close()
  end)

  it("survives a handler that closes the manager with events still queued", function()
    local m2 = assert(lm.new())
    local seen = 0
    m2:on("wakeup", function(id)
      seen = seen + 1
      if id == 2 then m2:close() end
    end)
    for i = 1, 5 do assert(m2:wakeup(i)) end
    local n = m2:poll(100)
    assert.equal(2, n)
    assert.equal(2, seen)
    assert.is_false(m2:is_open())
    assert.has_error(function() m2:poll(0) end, "poll: the manager is closed")
  end)

  it("allows polling again from inside a handler, keeping the order of events", function()
    local m2 = assert(lm.new())
    local order = {}
    m2:on("wakeup", function(id)
      order[#order + 1] = id
      if id == 1 then m2:poll(0) end -- delivers 2..4 now, before returning
    end)
    for i = 1, 4 do assert(m2:wakeup(i)) end
    m2:poll(100)
    assert.same({ 1, 2, 3, 4 }, order)
    m2:close()
  end)

  it("a handler error propagates out of poll and loses no event", function()
    local m2 = assert(lm.new())
    local seen = 0
    m2:on("wakeup", function(id)
      seen = seen + 1
      if id == 2 then error("boom in handler") end
    end)
    for i = 1, 4 do assert(m2:wakeup(i)) end
    local ok, err = pcall(m2.poll, m2, 100)
    assert.is_false(ok)
    assert.matches("boom in handler", err)
    assert.equal(2, seen)
    assert(m2:poll(0))
    assert.equal(4, seen)
    m2:close()
  end)
end)
