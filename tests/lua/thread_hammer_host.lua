-- The host of threads_spec.lua, run in a process of its own:
--   luajit thread_hammer_host.lua SO N_WAKEUP N_SEND HAMMER_MS
-- Loads the producer threads (thread_hammer.c compiled to SO), starts them on a
-- LibMongoose manager (N_WAKEUP calling wss_mgr_wakeup, N_SEND calling
-- wss_send_threadsafe on a tcp connection of the same manager), polls with poll(0)
-- for HAMMER_MS, measuring each poll, then stops them and polls until everything
-- accepted has arrived (bounded). Prints "key value" lines for the spec to check.
local ffi = require("ffi")
local H = require("helpers")
local lm = H.lm

ffi.cdef([[
  int hammer_start(const void *mgr, void *wakeup, void *send, uint64_t send_conn, int n_wakeup, int n_send,
                   uint64_t max_wakeup_calls, uint64_t max_send_calls, double poll_limit_ms);
  void hammer_poll_begin(void);
  void hammer_poll_end(void);
  void hammer_stop(void);
  uint64_t hammer_accepted(int i);
  uint64_t hammer_refused(int i);
  uint32_t hammer_last_refusal(int i);
  int hammer_watchdog_fired(void);
]])

local so, n_wakeup, n_send, hammer_ms = arg[1], tonumber(arg[2]), tonumber(arg[3]), tonumber(arg[4])
local MAX_WAKEUP_CALLS = 3000000 -- all wakeup threads together: bounds memory if polling livelocks
local MAX_SEND_CALLS = 20000     -- per send thread: 320 KB each, far below the send buffer limit
local WATCHDOG_MS = 1000         -- a poll this long stops the producers
local DRAIN_MS = 30000

local T = ffi.load(so)
local C = lm.C

local function say(k, v) io.write(k, " ", tostring(v), "\n") end

local mgr = assert(lm.new())
local errors = 0
mgr:on("error", function(_, msg) errors = errors + 1; if errors <= 3 then io.stderr:write("error event: ", msg, "\n") end end)

-- Wakeups: thread i passes id i and its sequence numbers 1, 2, 3... as data.
local u64 = ffi.new("uint64_t[2]")
local wake_next, wake_delivered, wake_order_errors = {}, 0, 0
mgr:on("wakeup", function(id, data)
  ffi.copy(u64, data, 8)
  local seq = tonumber(u64[0])
  local expect = (wake_next[id] or 0) + 1
  if seq ~= expect then wake_order_errors = wake_order_errors + 1 end
  wake_next[id] = seq
  wake_delivered = wake_delivered + 1
end)

-- Sends: 16-byte records (thread, sequence number) on one connection, read by its peer.
local server
local l = assert(mgr:listen("tcp://127.0.0.1:0", { accept = function(c) server = c end }))
local send_next, send_delivered, send_order_errors = {}, 0, 0
local rest = ""
assert(mgr:connect("tcp://127.0.0.1:" .. l:port(), {
  read = function(_, d)
    local s = rest .. d
    local n = #s - #s % 16
    for off = 0, n - 16, 16 do
      ffi.copy(u64, ffi.cast("const uint8_t *", s) + off, 16)
      local id, seq = tonumber(u64[0]), tonumber(u64[1])
      local expect = (send_next[id] or 0) + 1
      if seq ~= expect then send_order_errors = send_order_errors + 1 end
      send_next[id] = seq
      send_delivered = send_delivered + 1
    end
    rest = s:sub(n + 1)
  end,
}))
assert(H.run_until(mgr, function() return server end), "no connection")

assert(T.hammer_start(mgr._p, ffi.cast("void *", C.wss_mgr_wakeup), ffi.cast("void *", C.wss_send_threadsafe),
  server.id, n_wakeup, n_send, MAX_WAKEUP_CALLS, MAX_SEND_CALLS, WATCHDOG_MS) == 0, "hammer_start failed")

-- Poll while the threads push: each poll(0) must return promptly.
local max_poll, polls = 0, 0
local t_end = H.now() + hammer_ms
while H.now() < t_end do
  local t0 = H.now()
  T.hammer_poll_begin()
  local ok, err = mgr:poll(0)
  T.hammer_poll_end()
  local dt = H.now() - t0
  if dt > max_poll then max_poll = dt end
  polls = polls + 1
  assert(ok, err)
  if T.hammer_watchdog_fired() ~= 0 then break end
end
T.hammer_stop()

local wake_accepted, wake_refused, send_accepted, send_refused, refusal = 0, 0, 0, 0, 0
for i = 0, n_wakeup + n_send - 1 do
  local a, r = tonumber(T.hammer_accepted(i)), tonumber(T.hammer_refused(i))
  if i < n_wakeup then
    wake_accepted, wake_refused = wake_accepted + a, wake_refused + r
  else
    send_accepted, send_refused = send_accepted + a, send_refused + r
  end
  if r > 0 then refusal = T.hammer_last_refusal(i) end
end

-- Everything accepted arrives (bounded in time).
local deadline = H.now() + DRAIN_MS
while (wake_delivered < wake_accepted or send_delivered < send_accepted) and H.now() < deadline do
  assert(mgr:poll(10))
end
-- nothing more than that either
H.run_for(mgr, 50)

local ru = ffi.new("struct lmtest_rusage")
ffi.C.getrusage(0, ru)

say("threads", n_wakeup .. "+" .. n_send)
say("polls", polls)
say("max_poll_ms", string.format("%.1f", max_poll))
say("watchdog", T.hammer_watchdog_fired())
say("wakeup_accepted", wake_accepted)
say("wakeup_refused", wake_refused)
say("wakeup_delivered", wake_delivered)
say("wakeup_order_errors", wake_order_errors)
say("send_accepted", send_accepted)
say("send_refused", send_refused)
say("send_delivered", send_delivered)
say("send_order_errors", send_order_errors)
say("refusal", refusal ~= 0 and (lm.RESULTS[refusal] or refusal) or "none")
say("error_events", errors)
say("max_rss_mb", math.floor(tonumber(ru.rest[0]) / 1024))
mgr:close()
say("end", "ok")
