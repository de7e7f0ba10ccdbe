-- The Lua examples, started as their own processes on a free port (0), then used as a
-- client would: echo.lua (ws:// and wss://), chat.lua, rest.lua, luv.lua.
local H = require("helpers")
local lm = H.lm
local cjson = require("cjson")

-- Starts `luajit examples/NAME ARGS` and waits for its "listening on URL" line.
local function start(mgr, name, args)
  local p = H.spawn(string.format("luajit %s/examples/%s %s", H.root, name, args or "0"))
  local url
  H.run_until(mgr, function()
    url = p:output():match("listening on (%S+)")
    return url or p:done()
  end, 10000)
  if not url then p:kill() end -- not in the caller's procs yet: stop it here
  assert(url, name .. " did not start: " .. (p.err or H.read_file(p.base .. ".err") or ""))
  return p, url, tonumber(url:match(":(%d+)$"))
end

describe("examples", function()
  local mgr, procs
  before_each(function() mgr = assert(lm.new()); procs = {} end)
  after_each(function()
    for _, p in ipairs(procs) do p:kill() end
    mgr:close()
  end)

  local function ws_roundtrip(url, opts)
    local got, opened = {}, false
    opts = opts or {}
    opts.ws_open = function() opened = true end
    opts.ws_message = function(_, m, k) got[#got + 1] = k .. ":" .. m end
    local c = assert(mgr:connect(url, opts))
    assert.truthy(H.run_until(mgr, function() return opened end))
    c:send("hello")
    c:send("\0\1\2", "binary")
    c:send(string.rep("z", 100000))
    assert.truthy(H.run_until(mgr, function() return #got == 3 end))
    assert.same({ "text:hello", "binary:\0\1\2", "text:" .. string.rep("z", 100000) }, got)
    c:close()
  end

  it("echo.lua echoes over ws://, on any path", function()
    local p, url = start(mgr, "echo.lua")
    procs[#procs + 1] = p
    assert.matches("^ws://127%.0%.0%.1:%d+$", url)
    ws_roundtrip(url .. "/any/path", { ws_deflate = true })
  end)

  it("echo.lua --tls echoes over wss://", function()
    local certs = H.certs()
    local p, url, port = start(mgr, "echo.lua", "0 --tls " .. certs.cert .. " " .. certs.key)
    procs[#procs + 1] = p
    assert.matches("^wss://", url)
    ws_roundtrip("wss://localhost:" .. port .. "/", { tls = { ca = certs.ca } })
  end)

  it("echo.lua explains its usage", function()
    local p = H.run_cmd(mgr, "luajit " .. H.root .. "/examples/echo.lua")
    assert.equal(2, p.rc)
    assert.matches("usage: luajit examples/echo.lua PORT", p.err)
  end)

  it("chat.lua serves the page and broadcasts messages as JSON", function()
    local p, url, port = start(mgr, "chat.lua")
    procs[#procs + 1] = p
    local st, h, body = H.request(mgr, port, "GET", "/")
    assert.equal(200, st)
    assert.matches("text/html", h["content-type"])
    assert.matches("new WebSocket", body)
    local a, b = {}, {}
    local opened = 0
    local ca = assert(mgr:connect("ws://127.0.0.1:" .. port .. "/ws?name=ann", {
      ws_open = function() opened = opened + 1 end,
      ws_message = function(_, m) a[#a + 1] = cjson.decode(m) end,
    }))
    assert.truthy(H.run_until(mgr, function() return #a == 1 end)) -- ann joined
    assert(mgr:connect("ws://127.0.0.1:" .. port .. "/ws?name=bob", {
      ws_open = function() opened = opened + 1 end,
      ws_message = function(_, m) b[#b + 1] = cjson.decode(m) end,
    }))
    assert.truthy(H.run_until(mgr, function() return #b == 1 end))
    ca:send("hi bob")
    assert.truthy(H.run_until(mgr, function() return #a == 3 and #b == 2 end))
    assert.same({ type = "join", name = "bob" }, a[2])
    assert.same({ type = "msg", name = "ann", text = "hi bob" }, a[3])
    assert.same({ type = "msg", name = "ann", text = "hi bob" }, b[2])
    ca:close()
    assert.truthy(H.run_until(mgr, function() return #b == 3 end))
    assert.same({ type = "leave", name = "ann" }, b[3])
    local _ = url
  end)

  it("rest.lua answers its JSON API", function()
    local p, _, port = start(mgr, "rest.lua")
    procs[#procs + 1] = p
    local base = "http://127.0.0.1:" .. port
    local st, _, body = H.curl(mgr, base .. "/todos")
    assert.same({ 200, {} }, { st, cjson.decode(body) })
    st, _, body = H.curl(mgr, "-H 'Content-Type: application/json' -d '{\"title\":\"write docs\"}' " .. base .. "/todos")
    assert.equal(201, st)
    local todo = cjson.decode(body)
    assert.same({ id = 1, title = "write docs", done = false }, todo)
    st, _, body = H.curl(mgr, "-X PATCH -d '{\"done\":true}' " .. base .. "/todos/1")
    assert.same({ 200, { id = 1, title = "write docs", done = true } }, { st, cjson.decode(body) })
    st, _, body = H.curl(mgr, base .. "/todos/1")
    assert.same({ 200, { id = 1, title = "write docs", done = true } }, { st, cjson.decode(body) })
    st, _, body = H.curl(mgr, base .. "/todos")
    assert.equal(1, #cjson.decode(body))
    st, _, body = H.curl(mgr, "-d 'nope' " .. base .. "/todos")
    assert.equal(400, st)
    st = H.curl(mgr, "-X DELETE " .. base .. "/todos/1")
    assert.equal(204, st)
    st, _, body = H.curl(mgr, base .. "/todos/1")
    assert.same({ 404, { error = "no todo 1" } }, { st, cjson.decode(body) })
    st, _, body = H.curl(mgr, base .. "/elsewhere")
    assert.same({ 404, { error = "not found: /elsewhere" } }, { st, cjson.decode(body) })
  end)

  it("luv.lua serves from a luv loop beside a luv timer", function()
    local p, _, port = start(mgr, "luv.lua")
    procs[#procs + 1] = p
    H.sleep(250)
    local st, _, body = H.curl(mgr, "http://127.0.0.1:" .. port .. "/")
    assert.equal(200, st)
    local stats = cjson.decode(body)
    assert.equal(1, stats.requests)
    assert.is_true(stats.ticks >= 1)
    st, _, body = H.curl(mgr, "http://127.0.0.1:" .. port .. "/")
    assert.equal(2, cjson.decode(body).requests)
  end)
end)
