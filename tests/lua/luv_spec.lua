-- libuv (luv) interop in both styles, serving real clients (curl spawned by luv):
-- fd-driven (uv.new_poll on mgr:fd(), no CPU while idle) and timer/idle polling.
-- Results are recorded in callbacks and asserted after uv.run() returns: an error
-- inside a luv callback is not a busted failure.
local H = require("helpers")
local lm = H.lm
local uv = require("luv")

-- Runs curl under luv; cb(body, exit_code) when it exits.
local function uv_curl(url, cb)
  local out = uv.new_pipe(false)
  local chunks = {}
  local handle
  handle = uv.spawn("curl", { args = { "-s", "--max-time", "5", url }, stdio = { nil, out, nil } },
    function(code)
      handle:close()
      -- the pipe may still hold data: read it to EOF before reporting
      local function finish() if not out:is_closing() then out:close() end cb(table.concat(chunks), code) end
      if out:is_active() then
        local t = uv.new_timer()
        t:start(50, 0, function() t:close(); finish() end)
      else
        finish()
      end
    end)
  out:read_start(function(err, data)
    if data then chunks[#chunks + 1] = data elseif not err then out:read_stop() end
  end)
end

-- Runs the loop until done() or `ms`; returns whether done() became true.
-- Without done(), just runs the loop for `ms` (one luv timer, no other wakeups).
local function run_loop(ms, done)
  local guard = uv.new_timer()
  guard:start(ms, 0, function() uv.stop() end)
  local check
  if done then
    check = uv.new_timer()
    check:start(5, 5, function() if done() then uv.stop() end end)
  end
  uv.run()
  guard:close()
  if check then check:close() end
  uv.run("nowait") -- let the closes complete
  return done == nil or done()
end

local function serve(mode)
  local mgr = assert(lm.new())
  local l = assert(mgr:listen("http://127.0.0.1:0", {
    http = function(req, res) res:text(mode .. ":" .. req.path) end,
  }))
  local a = assert(mgr:attach(uv, { mode = mode, interval = mode == "timer" and 5 or nil }))
  local bodies = {}
  for i = 1, 3 do
    uv_curl(string.format("http://127.0.0.1:%d/r%d", l:port(), i), function(body) bodies[#bodies + 1] = body end)
  end
  local ok = run_loop(8000, function() return #bodies == 3 end)
  a:detach()
  mgr:close()
  table.sort(bodies)
  return ok, bodies
end

describe("luv", function()
  it("fd-driven: serves curl from uv.new_poll(mgr:fd())", function()
    local ok, bodies = serve("fd")
    assert.is_true(ok)
    assert.same({ "fd:/r1", "fd:/r2", "fd:/r3" }, bodies)
  end)

  it("timer polling (the luvit style) serves curl", function()
    local ok, bodies = serve("timer")
    assert.is_true(ok)
    assert.same({ "timer:/r1", "timer:/r2", "timer:/r3" }, bodies)
  end)

  it("idle polling serves curl", function()
    local ok, bodies = serve("idle")
    assert.is_true(ok)
    assert.same({ "idle:/r1", "idle:/r2", "idle:/r3" }, bodies)
  end)

  it("fd-driven: manager timers and wakeups from outside poll wake the loop", function()
    local mgr = assert(lm.new())
    local got = {}
    mgr:on("wakeup", function(id, data) got[#got + 1] = "wakeup:" .. id .. ":" .. data end)
    mgr:timer(50, function() got[#got + 1] = "timer" end)
    local a = assert(mgr:attach(uv))
    uv.update_time() -- the loop's cached time may be old
    local t = uv.new_timer()
    t:start(100, 0, function() t:close(); mgr:wakeup(3, "from luv") end)
    local ok = run_loop(3000, function() return #got == 2 end)
    a:detach()
    mgr:close()
    assert.is_true(ok)
    table.sort(got)
    assert.same({ "timer", "wakeup:3:from luv" }, got)
  end)

  it("fd-driven beside a luv timer doing other work, with tcp clients on luv", function()
    local mgr = assert(lm.new())
    local l = assert(mgr:listen("tcp://127.0.0.1:0", { read = function(c, d) c:send(d:reverse()) end }))
    local a = assert(mgr:attach(uv))
    local ticks = 0
    local work = uv.new_timer()
    work:start(10, 10, function() ticks = ticks + 1 end)
    local replies = {}
    for i = 1, 5 do
      local sock = uv.new_tcp()
      sock:connect("127.0.0.1", l:port(), function(err)
        if err then replies[#replies + 1] = err; return end
        sock:read_start(function(_, data)
          if data then replies[#replies + 1] = data; sock:close() end
        end)
        sock:write("abc" .. i)
      end)
    end
    local ok = run_loop(5000, function() return #replies == 5 and ticks >= 10 end)
    work:close()
    a:detach()
    mgr:close()
    uv.run("nowait")
    assert.is_true(ok)
    table.sort(replies)
    assert.same({ "1cba", "2cba", "3cba", "4cba", "5cba" }, replies)
  end)

  it("detach stops the manager's handle, so uv.run returns", function()
    local mgr = assert(lm.new())
    assert(mgr:listen("tcp://127.0.0.1:0"))
    local a = assert(mgr:attach(uv))
    assert.is_true(mgr:detach())
    assert.is_nil(mgr._attached)
    local t0 = H.now()
    uv.run() -- nothing active: returns at once
    assert.is_true(H.now() - t0 < 1000)
    local _ = a
    -- closing the manager detaches it too
    local b = assert(mgr:attach(uv))
    mgr:close()
    assert.is_nil(b._handle)
    uv.run()
  end)

  it("fd-driven idle server costs well under 1% of a core #cpu", function()
    local mgr = assert(lm.new())
    local l = assert(mgr:listen("http://127.0.0.1:0", { http = function(_, res) res:text("ok") end }))
    assert(mgr:listen("ws://127.0.0.1:0"))
    -- an idle client connection, held open for the whole measurement
    local accepted = false
    mgr:on("accept", function() accepted = true end)
    local polls = 0
    local a = assert(mgr:attach(uv))
    local orig = mgr.poll
    mgr.poll = function(self, ms) polls = polls + 1; return orig(self, ms) end
    local sock = uv.new_tcp()
    sock:connect("127.0.0.1", l:port(), function() end)
    assert.is_true(run_loop(2000, function() return accepted end))
    polls = 0
    local seconds = 3
    local cpu0, wall0 = H.cpu_ms(), H.now()
    run_loop(seconds * 1000)
    local cpu, wall = H.cpu_ms() - cpu0, H.now() - wall0
    sock:close()
    a:detach()
    mgr:close()
    uv.run("nowait")
    if os.getenv("LM_VERBOSE") then
      io.stderr:write(string.format("\nidle: %.1f ms CPU over %.0f ms (%.3f%% of a core), %d polls\n",
        cpu, wall, cpu / wall * 100, polls))
    end
    assert.is_true(wall >= seconds * 1000 - 50)
    assert(cpu < wall * 0.01, string.format("idle CPU %.1f ms over %.0f ms wall (%.2f%%)", cpu, wall, cpu / wall * 100))
    assert(polls <= 2, "the manager was polled " .. polls .. " times while idle")
  end)
end)
