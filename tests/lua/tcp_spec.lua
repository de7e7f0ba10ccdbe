-- Raw tcp and udp, the library's own clients, addresses, backpressure, timers and
-- wakeups, and the runtime failures of listen/connect.
local H = require("helpers")
local lm = H.lm

describe("tcp and udp", function()
  local mgr
  before_each(function() mgr = assert(lm.new()) end)
  after_each(function() mgr:close() end)

  it("echoes over tcp between a listener and a client of the same manager", function()
    local server_got, client_got, accepted = {}, {}, nil
    local l = assert(mgr:listen("tcp://127.0.0.1:0", {
      accept = function(c) accepted = c end,
      read = function(c, data) server_got[#server_got + 1] = data; assert(c:send(data:upper())) end,
    }))
    local connected = false
    local c = assert(mgr:connect("tcp://127.0.0.1:" .. l:port(), {
      connect = function(c) connected = true; assert(c:send("hello tcp")) end,
      read = function(_, data) client_got[#client_got + 1] = data end,
    }))
    assert.is_true(H.run_until(mgr, function() return table.concat(client_got) == "HELLO TCP" end))
    assert.is_true(connected)
    assert.equal("hello tcp", table.concat(server_got))
    assert.equal("tcp", c.kind)
    assert.equal("tcp", accepted.kind)
    assert.equal(l, accepted.listener)
    assert.equal("listener", l.kind)
    -- addresses
    assert.equal("127.0.0.1:" .. l:port(), c:peer())
    assert.equal(c:local_address(), accepted:peer())
    assert.equal("127.0.0.1:" .. l:port(), l:local_address())
    assert.equal(0, c:buffered())
    -- per-connection user data
    accepted.data.name = "bob"
    local closes = {}
    l:on("close", function(conn, code, reason, by_peer)
      closes[#closes + 1] = { conn.data.name, by_peer }
    end)
    c:close()
    assert.is_true(H.run_until(mgr, function() return #closes == 1 and c.closed end))
    assert.same({ "bob", true }, closes[1])
    assert.is_true(accepted.closed)
  end)

  it("moves several megabytes with backpressure and drain events", function()
    local total, want = 0, 8 * 1024 * 1024
    local sha_in = {}
    local l = assert(mgr:listen("tcp://127.0.0.1:0", {
      read = function(_, data) total = total + #data; sha_in[#sha_in + 1] = data end,
    }))
    local chunk = string.rep("0123456789abcdef", 64 * 1024) -- 1 MiB
    local drains = 0
    local c = assert(mgr:connect("tcp://127.0.0.1:" .. l:port(), {
      connect = function(c) for _ = 1, 8 do assert(c:send(chunk)) end end,
      drain = function() drains = drains + 1 end,
    }))
    assert.is_true(H.run_until(mgr, function() return total >= want end, 10000))
    assert.equal(want, total)
    assert.equal(lm.md5_hex(string.rep(chunk, 8)), lm.md5_hex(table.concat(sha_in)))
    assert.equal(0, c:buffered())
    assert.is_true(drains >= 0)
  end)

  it("exchanges udp datagrams", function()
    local got = {}
    local a = assert(mgr:listen("udp://127.0.0.1:0", {
      read = function(l, data, from)
        got[#got + 1] = { "a", data, from }
        assert(l:send("pong:" .. data)) -- to the last sender
      end,
    }))
    local b = assert(mgr:listen("udp://127.0.0.1:0", {
      read = function(_, data, from) got[#got + 1] = { "b", data, from } end,
    }))
    assert.equal("listener", b.kind)
    assert(b:send_to("127.0.0.1:" .. a:port(), "ping"))
    assert.is_true(H.run_until(mgr, function() return #got == 2 end))
    assert.same({ "a", "ping", "127.0.0.1:" .. b:port() }, got[1])
    assert.same({ "b", "pong:ping", "127.0.0.1:" .. a:port() }, got[2])
    assert.equal("127.0.0.1:" .. b:port(), a:peer())
    local ok, err, name = b:send_to("not an address", "x")
    assert.is_nil(ok)
    assert.equal("INVALID_ARGUMENT", name)
    assert.matches("^INVALID_ARGUMENT: ", err)
  end)

  it("reports connect failures as error then close", function()
    local l = assert(mgr:listen("tcp://127.0.0.1:0"))
    local port = l:port()
    l:close()
    H.run_for(mgr, 20)
    local seen = {}
    assert(mgr:connect("tcp://127.0.0.1:" .. port, {
      connect = function() seen[#seen + 1] = "connect" end,
      error = function(_, msg, code) seen[#seen + 1] = "error" ; seen.msg = msg; seen.code = code end,
      close = function() seen[#seen + 1] = "close" end,
    }))
    assert.is_true(H.run_until(mgr, function() return seen[#seen] == "close" end))
    assert.same({ "error", "close" }, { seen[1], seen[2] })
    assert.is_string(seen.msg)
    assert.is_number(seen.code)
  end)

  it("returns nil, err for runtime failures of listen and connect", function()
    local v, err, name = mgr:listen("gopher://127.0.0.1:0")
    assert.is_nil(v)
    assert.equal("BAD_URL", name)
    assert.matches("^BAD_URL: ", err)
    local l = assert(mgr:listen("tcp://127.0.0.1:0"))
    v, err, name = mgr:listen("tcp://127.0.0.1:" .. l:port())
    assert.is_nil(v)
    assert.equal("ADDRESS_IN_USE", name)
    v, err, name = mgr:connect("tcp://127.0.0.1")
    assert.is_nil(v)
    assert.is_string(name)
    v, err, name = mgr:listen("https://127.0.0.1:0")
    assert.is_nil(v)
    assert.equal("INVALID_ARGUMENT", name) -- no certificate given
    assert.matches("^INVALID_ARGUMENT: ", err)
    v, err, name = mgr:listen("https://127.0.0.1:0", { tls = { cert = "/nonexistent.pem", key = "/nonexistent.key" } })
    assert.is_nil(v)
    assert.equal("TLS_CONFIG", name)
    assert.matches("nonexistent", err)
  end)

  it("listens with options and limits", function()
    local l = assert(mgr:listen("http://127.0.0.1:0", {
      max_body_bytes = 10, idle_timeout_ms = 5000, header_timeout_ms = false, backlog = 16,
      http = function(_, res) res:text("ok") end,
    }))
    local st = H.request(mgr, l:port(), "POST", "/", { body = string.rep("x", 100) })
    assert.equal(413, st)
    st = H.request(mgr, l:port(), "POST", "/", { body = "small" })
    assert.equal(200, st)
  end)
end)

describe("timers and wakeups", function()
  local mgr
  before_each(function() mgr = assert(lm.new()) end)
  after_each(function() mgr:close() end)

  it("fires one-shot timers in order", function()
    local order = {}
    local t0 = H.now()
    mgr:timer(60, function() order[#order + 1] = "c" end)
    mgr:timer(10, function(t) order[#order + 1] = "a"; order.t = t end)
    local tb = mgr:timer(30, function() order[#order + 1] = "b" end)
    assert.is_true(H.run_until(mgr, function() return #order == 3 end))
    assert.same({ "a", "b", "c" }, { order[1], order[2], order[3] })
    assert.is_true(H.now() - t0 >= 55)
    assert.is_false(order.t.active)
    assert.is_false(tb:cancel()) -- already fired
  end)

  it("repeats until cancelled, also from its own callback", function()
    local n = 0
    local t = mgr:timer(5, function(t)
      n = n + 1
      if n == 3 then assert.is_true(t:cancel()) end
    end, true)
    assert.is_true(t.repeating)
    assert.is_true(H.run_until(mgr, function() return n == 3 end))
    H.run_for(mgr, 40)
    assert.equal(3, n)
    assert.is_false(t.active)
    assert.is_false(t:cancel())
  end)

  it("drops the event of a timer cancelled before it is handled", function()
    local fired = false
    local t = mgr:timer(0, function() fired = true end)
    H.sleep(5) -- due now, not yet polled
    assert.is_true(t:cancel())
    H.run_for(mgr, 20)
    assert.is_false(fired)
  end)

  it("uses the manager's timer handler when a timer has no function", function()
    local got
    mgr:on("timer", function(t) got = t end)
    local t = mgr:timer(1)
    assert.truthy(H.run_until(mgr, function() return got end))
    assert.equal(t, got)
    assert.equal(string.format("timer %d", t.id), tostring(t))
  end)

  it("delivers wakeups with their data", function()
    local got = {}
    mgr:on("wakeup", function(id, data) got[#got + 1] = id .. "=" .. data end)
    assert(mgr:wakeup(7, "seven"))
    assert(mgr:wakeup())
    assert.is_true(H.run_until(mgr, function() return #got == 2 end))
    assert.same({ "7=seven", "0=" }, got)
  end)

  it("exposes next_timeout and fd", function()
    assert.is_nil(mgr:next_timeout())
    local t = mgr:timer(1000)
    local nt = mgr:next_timeout()
    assert.is_true(nt > 900 and nt <= 1000)
    t:cancel()
    assert.is_number(mgr:fd())
    assert.is_true(mgr:fd() >= 0)
  end)
end)
