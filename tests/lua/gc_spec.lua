-- Garbage collection: managers and connections dropped without close() are collected,
-- their descriptors released, and nothing accumulates over many connections.
local H = require("helpers")
local lm = H.lm

-- A compiled trace keeps the closures and tables it specialised on (its constants) alive
-- until the trace is flushed, so a test that waits for an object to be collected flushes
-- the JIT first: otherwise whether the object is collected depends on what was compiled.
local function full_gc()
  if jit then jit.flush() end
  for _ = 1, 4 do collectgarbage("collect") end
end

describe("gc", function()
  it("collects a manager dropped without close, with its listeners and connections", function()
    full_gc()
    local fds0 = H.fd_count()
    local weak = setmetatable({}, { __mode = "v" })
    local function make()
      local mgr = assert(lm.new())
      local accepted
      local l = assert(mgr:listen("tcp://127.0.0.1:0", { accept = function(c) accepted = c end }))
      local c = assert(mgr:connect("tcp://127.0.0.1:" .. l:port()))
      H.run_until(mgr, function() return accepted end)
      local t = mgr:timer(100000)
      weak.mgr, weak.l, weak.c, weak.accepted, weak.t = mgr, l, c, accepted, t
      assert.is_true(H.fd_count() > fds0)
    end
    make()
    full_gc()
    assert.is_nil(weak.mgr)
    assert.is_nil(weak.l)
    assert.is_nil(weak.c)
    assert.is_nil(weak.accepted)
    assert.is_nil(weak.t)
    assert.equal(fds0, H.fd_count()) -- epoll, eventfd, timerfd and sockets all closed
  end)

  it("does not leak descriptors or memory over many dropped managers", function()
    full_gc()
    local fds0 = H.fd_count()
    -- in a function of its own, so that no stack slot of this one holds the last manager
    local function make(n)
      for _ = 1, n do
        local mgr = assert(lm.new())
        assert(mgr:listen("http://127.0.0.1:0"))
        mgr:poll(0)
      end
    end
    make(200)
    full_gc()
    assert.equal(fds0, H.fd_count())
  end)

  it("collects connection objects once they are closed, even if the program dropped them", function()
    local mgr = assert(lm.new())
    local weak = setmetatable({}, { __mode = "k" })
    local served = 0
    local l = assert(mgr:listen("http://127.0.0.1:0", {
      http = function(req, res) weak[req.conn] = true; weak[req] = true; weak[res] = true; res:text("x") end,
      close = function() served = served + 1 end,
    }))
    -- clients that the program does not keep
    for _ = 1, 20 do
      assert(mgr:connect("tcp://127.0.0.1:" .. l:port(), {
        connect = function(c) weak[c] = true; c:send("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") end,
      }))
    end
    assert.is_true(H.run_until(mgr, function() return served == 20 end))
    H.run_for(mgr, 50) -- the clients' own close events
    full_gc()
    assert.is_nil(next(weak))
    local live = 0
    for _ in pairs(mgr._conns) do live = live + 1 end
    assert.equal(1, live) -- only the listener
    mgr:close()
  end)

  it("keeps memory flat over many connections", function()
    local mgr = assert(lm.new())
    local l = assert(mgr:listen("http://127.0.0.1:0", { http = function(_, res) res:text("ok") end }))
    local function round(n)
      local done = 0
      for _ = 1, n do
        assert(mgr:connect("tcp://127.0.0.1:" .. l:port(), {
          connect = function(c) c:send("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") end,
          close = function() done = done + 1 end,
        }))
      end
      assert.is_true(H.run_until(mgr, function() return done == n end, 10000))
      H.run_for(mgr, 20)
    end
    round(100)
    full_gc()
    local kb0 = collectgarbage("count")
    round(300)
    full_gc()
    local kb1 = collectgarbage("count")
    assert(kb1 - kb0 < 200, string.format("Lua heap grew by %.0f KiB over 300 connections", kb1 - kb0))
    mgr:close()
  end)

  it("keeps no object for ids named after their close (cross-thread sends)", function()
    local mgr = assert(lm.new())
    local errors = {}
    mgr:on("error", function(conn, msg) errors[#errors + 1] = { conn, msg } end)
    local l = assert(mgr:listen("tcp://127.0.0.1:0"))
    local c = assert(mgr:connect("tcp://127.0.0.1:" .. l:port()))
    H.run_for(mgr, 30)
    c:close()
    assert.truthy(H.run_until(mgr, function() return c.closed end))
    -- "another thread" sends to the closed connection, and to the listener
    assert.equal(0, lm.C.wss_send_threadsafe(mgr._p, c.id, "x", 1, 0))
    assert.equal(0, lm.C.wss_send_threadsafe(mgr._p, l.id, "x", 1, 0))
    -- Both failures come back as error events: the stale id's and the listener's.
    assert.truthy(H.run_until(mgr, function() return #errors >= 2 end))
    H.run_for(mgr, 30)
    assert.equal(c.id, errors[1][1].id)
    assert.equal(l, errors[2][1])
    assert.is_nil(mgr._conns[c.id])
    local live = 0
    for _ in pairs(mgr._conns) do live = live + 1 end
    assert.equal(1, live) -- the listener (the accepted connection closed with its peer)
    mgr:close()
  end)

  it("collects objects of a closed manager", function()
    local weak = setmetatable({}, { __mode = "v" })
    local function make()
      local mgr = assert(lm.new())
      weak.l = assert(mgr:listen("tcp://127.0.0.1:0"))
      weak.mgr = mgr
      mgr:close()
    end
    make()
    full_gc()
    assert.is_nil(weak.l)
    assert.is_nil(weak.mgr)
  end)
end)
