-- Other threads hammering a manager that LuaJIT polls: wss_mgr_wakeup and
-- wss_send_threadsafe are thread-safe "while the manager is polled", and a poll waits
-- "up to timeout_ms". LuaJIT cannot start threads, so the producers are C
-- (thread_hammer.c, compiled here with cc); each run is a luajit process of its own
-- (thread_hammer_host.lua) under `timeout`, so that a livelocked poll fails the test
-- instead of hanging it. With 1 to 16 producer threads: every poll(0) returns
-- promptly, memory stays bounded, and every call that was accepted is delivered,
-- once and in order (calls refused because the queue is full are not).
local H = require("helpers")

local POLL_BOUND_MS = 500 -- the longest a poll(0) may take (2-core machines with 18 busy threads included)
local RSS_BOUND_MB = 300  -- the most memory the host may use
local HAMMER_MS = 1000

local so

local function run_host(n_wakeup, n_send)
  local path = H.script(string.format("arg = { %q, %d, %d, %d }\ndofile(%q)\n", so, n_wakeup, n_send, HAMMER_MS,
    H.dir .. "/thread_hammer_host.lua"))
  local p = H.spawn("timeout -s KILL 90 luajit " .. H.shell_quote(path))
  assert(p:wait(120000), "the host did not end")
  local r = {}
  for k, v in p.out:gmatch("(%S+) (%S+)\n") do r[k] = tonumber(v) or v end
  return r, p
end

describe("threads", function()
  setup(function()
    if os.execute("command -v cc >/dev/null 2>&1") ~= 0 then return end
    local out = H.tmpdir() .. "/thread_hammer.so"
    local cmd = string.format("cc -O2 -shared -fPIC -pthread -o %s %s 2>&1", H.shell_quote(out),
      H.shell_quote(H.dir .. "/thread_hammer.c"))
    assert(os.execute(cmd) == 0, "cannot compile thread_hammer.c")
    so = out
  end)

  for _, n in ipairs({ { 1, 1 }, { 2, 1 }, { 4, 1 }, { 16, 2 } }) do
    local n_wakeup, n_send = n[1], n[2]
    it(string.format("%d wakeup and %d send threads: polls stay prompt, nothing accepted is lost", n_wakeup, n_send),
      function()
        if not so then return pending("no C compiler") end
        local r, p = run_host(n_wakeup, n_send)
        local summary = p.out:gsub("\n", ", ")
        assert(p.rc == 0, string.format("the host exited with %d (%s): %s %s", p.rc,
          p.rc == 137 and "killed by timeout" or (p.rc > 128 and "signal " .. (p.rc - 128) or "error"), summary, p.err))
        assert.equal("ok", r["end"])
        assert(r.watchdog == 0, "a poll(0) ran past 1 s while the threads pushed (livelock): " .. summary)
        assert(r.max_poll_ms < POLL_BOUND_MS, "a poll(0) took " .. r.max_poll_ms .. " ms: " .. summary)
        assert(r.max_rss_mb < RSS_BOUND_MB, "the host used " .. r.max_rss_mb .. " MB: " .. summary)
        assert(r.wakeup_accepted > 0, summary)
        assert(r.wakeup_delivered == r.wakeup_accepted, "wakeups lost: " .. summary)
        assert(r.wakeup_order_errors == 0, "wakeups out of order: " .. summary)
        assert(r.send_accepted > 0, summary)
        assert(r.send_delivered == r.send_accepted, "sends lost: " .. summary)
        assert(r.send_order_errors == 0, "sends out of order: " .. summary)
        assert(r.error_events == 0, summary)
        -- a refused call is the documented "queue full" result
        assert(r.refusal == "none" or r.refusal == "LIMIT", "refused with " .. tostring(r.refusal))
      end)
  end
end)
