--- LibMongoose.core: managers, listeners and connections, timers, and the event pump.
--
-- A manager owns the C manager (`_p`, freed by the GC or by close()), the live
-- connection and timer objects by id, and the batch of events being dispatched. `poll`
-- pulls events in batches and calls the Lua handlers; nothing calls back from C.
--
-- HTTP requests are made into request and response objects by LibMongoose.http, which
-- sits above this module and installs its constructor here (`set_exchange`) when it
-- loads; a manager attached to luv is let go through its attachment's own methods.
local ffi = require("ffi")
local base = require("LibMongoose.base")
local options = require("LibMongoose.options")
local event = require("LibMongoose.event")
base.internal()

local ffi_new, ffi_string, ffi_gc, ffi_sizeof = ffi.new, ffi.string, ffi.gc, ffi.sizeof
local type, tonumber, getmetatable, setmetatable, rawget, rawset, pairs = type, tonumber, getmetatable,
  setmetatable, rawget, rawset, pairs
local str_format, str_lower, str_sub, str_match = string.format, string.lower, string.sub, string.match
local floor = math.floor

local C = base.C
local EV = base.EV
local R = base.RESULTS
local R_OK, R_NOT_FOUND, R_CLOSED, R_INVALID_STATE, R_WRONG_KIND = R.OK, R.NOT_FOUND, R.CLOSED, R.INVALID_STATE,
  R.WRONG_KIND
local HAS_WS, MAX_INT, SHOW_MAX, ws_opcode = base.HAS_WS, base.MAX_INT, base.SHOW_MAX, base.ws_opcode
local raise, argerr, typeof, show, show_key, fail = base.raise, base.argerr, base.typeof, base.show, base.show_key,
  base.fail
local check_number, check_integer, is_handler = options.check_number, options.check_integer, options.is_handler
local HANDLERS = options.HANDLERS
local ev_kind, ev_id, ev_parent, ev_data, ev_message_kind = event.kind, event.id, event.parent, event.data,
  event.message_kind
local ev_read, ev_ws_open, ev_fragment, ev_control = event.read, event.ws_open, event.fragment, event.control
local ev_close, ev_error, ev_fields = event.close, event.error, event.fields

local Manager, Conn, Timer = base.Manager, base.Conn, base.Timer

local EV_LISTEN, EV_ACCEPT, EV_CONNECT, EV_READ = EV.LISTEN, EV.ACCEPT, EV.CONNECT, EV.READ
local EV_HTTP_MSG, EV_WS_OPEN, EV_WS_MSG, EV_WS_FRAGMENT = EV.HTTP_MSG, EV.WS_OPEN, EV.WS_MSG, EV.WS_FRAGMENT
local EV_WS_CTL, EV_DRAIN, EV_TIMER, EV_WAKEUP = EV.WS_CTL, EV.DRAIN, EV.TIMER, EV.WAKEUP
local EV_ERROR, EV_CLOSE, EV_TLS_READY = EV.ERROR, EV.CLOSE, EV.TLS_READY

local BATCH = 64 -- events taken per wss_mgr_next_events call

-- Out-parameters, allocated once (lua-resty-core style). Their values are read right
-- after each call, so sharing them between managers is safe.
local id_out = ffi_new("wss_id[1]")
local size_out = ffi_new("size_t[1]")
local port_out = ffi_new("uint16_t[1]")
local tls_out = ffi_new("wss_tls_info[1]")
local addr_buf = ffi_new("char[256]")

local M = {}

---------------------------------------------------------------------------------------
-- Read-only fields, checks, failures

-- The fields of connections and timers that the module relies on (an id above all:
-- a program that assigned one would act on another object) are read-only. They live in
-- a table of their own, `_ro`, read through __index; assigning one is misuse. Other
-- fields (`data`, the program's own) are plain.
local CONN_RO = { id = true, kind = true, listener = true, closed = true, url = true, scheme = true,
                  client = true, target = true, protocol = true }
local TIMER_RO = { id = true, repeating = true, active = true }

--- "connection 5 (ws)" or "listener 1 (http://...)", for messages.
local function describe(c)
  local ro = c._ro
  if ro.kind == "listener" then
    local url = ro.url or "?"
    if #url > SHOW_MAX then url = str_sub(url, 1, SHOW_MAX) .. "..." end
    return str_format("listener %d (%s)", ro.id, url)
  end
  return str_format("connection %d (%s)", ro.id, ro.kind)
end
M.describe = describe

Conn.__index = function(c, k)
  local v = Conn[k]
  if v ~= nil then return v end
  local ro = rawget(c, "_ro")
  if ro then return ro[k] end
end
Conn.__newindex = function(c, k, v)
  if CONN_RO[k] then raise(str_format("'%s' of %s is read-only", k, describe(c))) end
  rawset(c, k, v)
end
Timer.__index = function(t, k)
  local v = Timer[k]
  if v ~= nil then return v end
  local ro = rawget(t, "_ro")
  if ro then return ro[k] end
end
Timer.__newindex = function(t, k, v)
  if TIMER_RO[k] then raise(str_format("'%s' of timer %d is read-only", k, t._ro.id)) end
  rawset(t, k, v)
end

--- The C manager of `m`; misuse unless `m` is an open manager.
local function check_mgr(m, fname)
  if getmetatable(m) ~= Manager then
    raise(str_format("%s: bad argument 'mgr' (manager expected, got %s)", fname, typeof(m)))
  end
  local p = m._p
  if p == nil then raise(fname .. ": the manager is closed") end
  return p
end
M.check_mgr = check_mgr

--- The C manager and the manager of `c`; misuse unless `c` is an open connection or
--- listener of an open manager.
local function check_conn(c, fname)
  if getmetatable(c) ~= Conn then
    raise(str_format("%s: bad argument 'conn' (connection expected, got %s)", fname, typeof(c)))
  end
  local m = c._m
  local p = m._p
  if p == nil then raise(fname .. ": the manager of " .. describe(c) .. " is closed") end
  if c._ro.closed then raise(fname .. ": " .. describe(c) .. " is closed") end
  return p, m
end
M.check_conn = check_conn

--- A call on connection `c` failed with result `r`. NOT_FOUND means the library has
--- forgotten the id; it issued it, so the connection closed and its close event was
--- drained (maybe not yet handled): that is CLOSED for the program, as documented.
local function fail_conn(m, r, c)
  if r == R_NOT_FOUND then return nil, "CLOSED: " .. describe(c) .. " is closed", "CLOSED" end
  return fail(m, r)
end
M.fail_conn = fail_conn

--- Gives connection `c` a handler table of its own (inheriting from its listener's or
--- the manager's) and returns it.
local function own_handlers(c)
  if not c._own_h then
    c._h = setmetatable({}, { __index = c._h })
    c._own_h = true
  end
  return c._h
end
M.own_handlers = own_handlers

---------------------------------------------------------------------------------------
-- Managers

--- Creates a manager. `opts`: { max_connections = n, max_threadsafe_bytes = n } and
--- handler functions.
function M.new(opts)
  local o, handlers = options.build("new", opts, "wss_mgr_opts", options.MGR_FIELDS, nil)
  local p = C.wss_mgr_new(o)
  if p == nil then
    return nil, "IO: cannot create a manager (out of file descriptors?)", "IO"
  end
  p = ffi_gc(p, C.wss_mgr_free)
  return setmetatable({
    _p = p,
    _evs = ffi_new("wss_event[?]", BATCH),
    _bi = 0, _bn = 0,     -- the current batch: next index, count
    _conns = {},          -- id (number) -> Conn, for live connections and listeners
    _timers = {},         -- id (number) -> Timer
    _h = handlers or {},  -- manager-wide handlers
  }, Manager)
end

--- Frees the manager: closes every listener and connection at once (no close handlers
--- run). Closing twice is harmless.
function Manager:close()
  if getmetatable(self) ~= Manager then argerr("close", "mgr", "manager", self) end
  local p = self._p
  if p == nil then return true end
  local a = self._attached -- made by LibMongoose.luv, which gives it these methods
  if a then a:_release() end
  self._p = nil
  self._bi, self._bn = 0, 0
  ffi_gc(p, nil)
  C.wss_mgr_free(p)
  for _, c in pairs(self._conns) do c._ro.closed = true end
  self._conns = {}
  for _, t in pairs(self._timers) do t._ro.active = false end
  self._timers = {}
  self._stop = true
  -- Last, with the manager in its final state: this may run other luv callbacks.
  if a then a:_complete_close() end
  return true
end

--- True while the manager is open.
function Manager:is_open()
  if getmetatable(self) ~= Manager then argerr("is_open", "mgr", "manager", self) end
  return self._p ~= nil
end

--- Sets (or with fn = nil removes) a manager-wide handler.
function Manager:on(name, fn)
  check_mgr(self, "on")
  if not HANDLERS[name] then
    raise(str_format("on: unknown handler name %s", show_key(name)))
  end
  if fn ~= nil and not is_handler(name, fn) then argerr("on", "fn", "function", fn) end
  self._h[name] = fn
  return self
end

local function new_conn(m, id, kind, listener, handlers)
  local h = m._h
  if listener then h = listener._h end
  -- Listeners always get a table of their own, so that listener:on() also reaches the
  -- connections accepted before it.
  if kind == "listener" and not handlers then handlers = {} end
  if handlers then h = setmetatable(handlers, { __index = h }) end
  local c = setmetatable({ data = {}, _ro = { id = id, kind = kind, listener = listener, closed = false },
                           _m = m, _h = h, _own_h = handlers ~= nil }, Conn)
  m._conns[id] = c
  return c
end

local ACCEPT_KIND = { http = "http", https = "http", ws = "ws", wss = "ws", tcp = "tcp", tls = "tcp", ssl = "tcp" }

--- Opens a listener. Returns the listener object or fail.
function Manager:listen(url, opts)
  local p = check_mgr(self, "listen")
  if type(url) ~= "string" then argerr("listen", "url", "string", url) end
  local o, handlers, anchor = options.build("listen", opts, "wss_listen_opts", options.LISTEN_FIELDS,
                                            options.listen_tls)
  self._anchor = anchor -- keeps generated strings alive during the call
  local r = C.wss_mgr_listen(p, url, o, id_out)
  self._anchor = nil
  if r ~= R_OK then return fail(self, r) end
  local l = new_conn(self, tonumber(id_out[0]), "listener", nil, handlers)
  local ro = l._ro
  ro.url = url
  ro.scheme = str_lower(str_match(url, "^(%a+)://") or "")
  return l
end

--- Opens an outbound connection (tcp://, tls://; ws:// and wss:// where the library
--- supports them). Returns the connection object or fail.
function Manager:connect(url, opts)
  local p = check_mgr(self, "connect")
  if type(url) ~= "string" then argerr("connect", "url", "string", url) end
  local o, handlers, anchor = options.build("connect", opts, "wss_connect_opts", options.CONNECT_FIELDS,
                                            options.connect_tls)
  self._anchor = anchor
  local r = C.wss_mgr_connect(p, url, o, id_out)
  self._anchor = nil
  if r ~= R_OK then return fail(self, r) end
  local scheme = str_lower(str_match(url, "^(%a+)://") or "")
  local kind = (scheme == "ws" or scheme == "wss") and "ws" or "tcp"
  local c = new_conn(self, tonumber(id_out[0]), kind, nil, handlers)
  local ro = c._ro
  ro.url = url
  ro.client = true
  return c
end

---------------------------------------------------------------------------------------
-- Event dispatch

-- The request and response of an HTTP_MSG event on connection `c` (id `id`); installed
-- by LibMongoose.http.
local new_exchange = function() raise("LibMongoose.http is not loaded") end

--- Installs fn(m, c, id) -> req, res, the maker of request and response objects.
function M.set_exchange(fn) new_exchange = fn end

-- The object of connection `id`; a new one for an accepted connection. An error event
-- can name an id this manager no longer knows (a send from another thread to a
-- connection that is gone): it gets a closed stand-in that is not remembered, since no
-- close event will come to forget it.
local function get_conn(m, id, parent_id, kind_of_event)
  local c = m._conns[id]
  if c then return c end
  local l = parent_id ~= 0 and m._conns[parent_id] or nil
  local kind = "tcp"
  if l and l._ro.kind == "listener" then kind = ACCEPT_KIND[l._ro.scheme] or "tcp" else l = nil end
  if kind_of_event == EV_ERROR then
    return setmetatable({ data = {}, _ro = { id = id, kind = kind, listener = l, closed = true }, _m = m, _h = m._h },
                        Conn)
  end
  return new_conn(m, id, kind, l, nil)
end

-- One event to the handlers. Every field of `ev` is read before a handler runs: a
-- handler may poll the manager again, which overwrites the batch array.
local function dispatch(m, ev)
  local kind = ev_kind(ev)
  if kind == EV_WS_MSG then -- the hot path first
    local c = m._conns[ev_id(ev)]
    if c then
      local f = c._h.ws_message
      if f then f(c, ev_data(ev), ev_message_kind(ev)) end
    end
    return
  end
  if kind == EV_TIMER then
    local id = ev_id(ev)
    local t = m._timers[id]
    if not t then return end -- cancelled; an event it had queued is dropped
    local ro = t._ro
    if not ro.repeating then
      m._timers[id] = nil
      ro.active = false
    end
    local f = t._fn or m._h.timer
    if f then f(t) end
    return
  end
  if kind == EV_WAKEUP then
    local f = m._h.wakeup
    if f then f(ev_id(ev), ev_data(ev)) end
    return
  end
  local id = ev_id(ev)
  if kind == EV_CLOSE then
    local c = m._conns[id]
    if not c then return end
    m._conns[id] = nil
    local ro = c._ro
    ro.closed = true
    local code, reason, by_peer = ev_close(ev)
    local h = c._h
    if ro.kind == "ws" and c._open then
      local f = h.ws_close
      if f then f(c, code, reason, by_peer) end
    end
    local f = h.close
    if f then f(c, code, reason, by_peer) end
    return
  end
  local c = get_conn(m, id, ev_parent(ev), kind)
  local h = c._h
  if kind == EV_HTTP_MSG then
    local req, res = new_exchange(m, c, id)
    local f = h.http
    if f then
      f(req, res)
    else
      res:status(404):text("Not Found\n")
    end
  elseif kind == EV_READ then
    local f = h.read
    if f then f(c, ev_read(ev)) end
  elseif kind == EV_WS_OPEN then
    local ro = c._ro
    ro.kind = "ws"
    c._open = true
    local target, proto = ev_ws_open(ev)
    ro.protocol, ro.target = proto, target
    local f = h.ws_open
    if f then f(c, target, proto) end
  elseif kind == EV_WS_FRAGMENT then
    local f = h.ws_fragment
    if f then f(c, ev_fragment(ev)) end
  elseif kind == EV_WS_CTL then
    local f = h.ws_ctl
    if f then f(c, ev_control(ev)) end
  elseif kind == EV_ACCEPT then
    local f = h.accept
    if f then f(c) end
  elseif kind == EV_CONNECT then
    local f = h.connect
    if f then f(c) end
  elseif kind == EV_ERROR then
    local f = h.error
    if f then f(c, ev_error(ev)) end
  elseif kind == EV_DRAIN then
    local f = h.drain
    if f then f(c) end
  elseif kind == EV_TLS_READY then
    local f = h.tls_ready
    if f then f(c) end
  elseif kind == EV_LISTEN then
    local f = h.listen
    if f then f(c) end
  end
end

-- Dispatches what is left of the current batch, then takes batches until none is
-- queued. The cursor lives in the manager, so an error raised by a handler loses no
-- event (the rest is dispatched by the next poll) and a nested poll continues the batch.
local function pump(m)
  local evs = m._evs
  local count = 0
  while true do
    local i = m._bi
    while i < m._bn do
      m._bi = i + 1
      dispatch(m, evs[i])
      count = count + 1
      if m._p == nil then return count end
      i = m._bi
    end
    local n = tonumber(C.wss_mgr_next_events(m._p, evs, BATCH))
    if n == 0 then return count end
    m._bi, m._bn = 0, n
  end
end

local function check_ms(fname, ms, default)
  if ms == nil then return default end
  check_number(fname, "argument 'ms'", ms, "number")
  if ms < 0 or ms >= 2147483647 then return -1 end
  return floor(ms)
end

--- Waits up to `ms` milliseconds (default 0; negative: no limit) for work, then calls
--- the handlers for every queued event. Returns the number of events handled, or fail.
function Manager:poll(ms)
  check_mgr(self, "poll")
  ms = check_ms("poll", ms, 0)
  local n = pump(self)
  local p = self._p
  if p == nil then return n end
  local r = C.wss_mgr_poll(p, n > 0 and 0 or ms, nil)
  if r ~= R_OK then return fail(self, r) end
  return n + pump(self)
end

-- One event as a table for mgr:events(), with the objects it concerns; nil for the
-- event of a cancelled timer.
local function event_table(m, ev)
  local t, parent = ev_fields(ev)
  local kind, id = t.kind, t.id
  if parent ~= 0 then t.parent = m._conns[parent] end
  if kind == EV_TIMER then
    local tm = m._timers[id]
    if not tm then return nil end
    if not tm._ro.repeating then m._timers[id] = nil; tm._ro.active = false end
    t.timer = tm
    return t
  elseif kind == EV_WAKEUP then
    return t
  elseif kind == EV_CLOSE then
    local c = m._conns[id]
    if c then
      m._conns[id] = nil
      c._ro.closed = true
    end
    t.conn = c
    return t
  end
  local c = get_conn(m, id, parent, kind)
  t.conn = c
  if kind == EV_HTTP_MSG then
    t.req, t.res = new_exchange(m, c, id)
  elseif kind == EV_WS_OPEN then
    local ro = c._ro
    ro.kind = "ws"
    c._open = true
    ro.target, ro.protocol = ev_ws_open(ev)
  end
  return t
end

--- An iterator over raw events: `for ev in mgr:events(ms) do ... end` waits up to `ms`
--- once (only when nothing is queued), then yields every queued event as a table.
function Manager:events(ms)
  check_mgr(self, "events")
  ms = check_ms("events", ms, 0)
  local polled = false
  return function()
    while true do
      local p = self._p
      if p == nil then return nil end
      local i = self._bi
      if i < self._bn then
        self._bi = i + 1
        local t = event_table(self, self._evs[i])
        if t then return t end
      else
        local n = tonumber(C.wss_mgr_next_events(p, self._evs, BATCH))
        if n > 0 then
          self._bi, self._bn = 0, n
        elseif polled then
          return nil
        else
          polled = true
          local r = C.wss_mgr_poll(p, ms, nil)
          if r ~= R_OK then return nil end
        end
      end
    end
  end
end

--- Polls until `mgr:stop()` (or `mgr:close()`) is called from a handler.
function Manager:run(ms)
  check_mgr(self, "run")
  ms = check_ms("run", ms, 1000)
  self._stop = false
  while not self._stop and self._p ~= nil do
    local ok, err = self:poll(ms)
    if not ok then return nil, err end
  end
  return true
end

--- Makes `run()` return after the current event.
function Manager:stop()
  if getmetatable(self) ~= Manager then argerr("stop", "mgr", "manager", self) end
  self._stop = true
  return true
end

--- The file descriptor that turns readable when the manager has work.
function Manager:fd()
  local p = check_mgr(self, "fd")
  return C.wss_mgr_fd(p)
end

--- Milliseconds until the next timer or deadline (0: events wait), or nil if none.
function Manager:next_timeout()
  local p = check_mgr(self, "next_timeout")
  local t = tonumber(C.wss_mgr_next_timeout_ms(p))
  if t < 0 then return nil end
  return t
end

--- Queues a wakeup event (handler `wakeup(id, data)`).
function Manager:wakeup(id, data)
  local p = check_mgr(self, "wakeup")
  if id == nil then id = 0 end
  check_integer("wakeup", "argument 'id'", id, 0, MAX_INT - 1, "integer in [0, 2^53)")
  if data == nil then data = "" end
  if type(data) ~= "string" then argerr("wakeup", "data", "string", data) end
  local r = C.wss_mgr_wakeup(p, id, data, #data)
  if r ~= R_OK then return fail(self, r) end
  return true
end

---------------------------------------------------------------------------------------
-- Timers

--- A timer: `fn(timer)` after `ms` milliseconds, and every `ms` after that if `repeating`.
function Manager:timer(ms, fn, repeating)
  local p = check_mgr(self, "timer")
  check_number("timer", "argument 'ms'", ms, "non-negative number")
  if ms < 0 or ms >= MAX_INT then
    raise(str_format("timer: bad argument 'ms' (non-negative number expected, got %s)", show(ms)))
  end
  if fn ~= nil and type(fn) ~= "function" then argerr("timer", "fn", "function", fn) end
  if repeating ~= nil and type(repeating) ~= "boolean" then argerr("timer", "repeating", "boolean", repeating) end
  local r = C.wss_timer_add(p, floor(ms), repeating and true or false, id_out)
  if r ~= R_OK then return fail(self, r) end
  local id = tonumber(id_out[0])
  local t = setmetatable({ _ro = { id = id, repeating = repeating and true or false, active = true },
                           _fn = fn, _m = self }, Timer)
  self._timers[id] = t
  return t
end

--- Stops a timer; returns true if it was active (a fired one-shot timer is not).
function Timer:cancel()
  if getmetatable(self) ~= Timer then argerr("cancel", "timer", "timer", self) end
  local m = self._m
  local ro = self._ro
  if not ro.active or m._p == nil then ro.active = false; return false end
  ro.active = false
  m._timers[ro.id] = nil
  return C.wss_timer_cancel(m._p, ro.id) == R_OK
end

--- Stops a timer (as cancel); returns true. Harmless twice, and after the manager closed.
function Timer:close()
  if getmetatable(self) ~= Timer then argerr("close", "timer", "timer", self) end
  self:cancel()
  return true
end

---------------------------------------------------------------------------------------
-- Connections and listeners

--- Sets (or removes) a handler for this connection or listener only.
function Conn:on(name, fn)
  check_conn(self, "on")
  if not HANDLERS[name] then
    raise(str_format("on: unknown handler name %s", show_key(name)))
  end
  if fn ~= nil and not is_handler(name, fn) then argerr("on", "fn", "function", fn) end
  rawset(own_handlers(self), name, fn)
  return self
end

--- Sends `data`: a WebSocket message (kind "text", the default, or "binary") on a
--- WebSocket connection; raw bytes on tcp/tls connections and udp listeners.
function Conn:send(data, kind)
  local p, m = check_conn(self, "send")
  if type(data) ~= "string" then argerr("send", "data", "string", data) end
  local ro = self._ro
  local k = ro.kind
  local r
  if k == "ws" then
    local op = ws_opcode("send", kind)
    if not HAS_WS then raise("send: this libwsserver has no WebSocket API") end
    r = C.wss_ws_send(p, ro.id, data, #data, op)
  elseif k == "tcp" or (k == "listener" and ro.scheme == "udp") then
    if kind ~= nil then raise("send: a message kind applies only to WebSocket connections; " .. describe(self) .. " is not one") end
    r = C.wss_conn_send(p, ro.id, data, #data)
  elseif k == "listener" then
    raise("send: cannot send on " .. describe(self) .. " (use broadcast)")
  else
    raise("send: " .. describe(self) .. " is not a WebSocket or tcp connection (answer HTTP requests with res)")
  end
  if r == R_OK then return true end
  return fail_conn(m, r, self)
end

--- Sends a datagram from a udp listener to `addr` ("ip:port").
function Conn:send_to(addr, data)
  local p, m = check_conn(self, "send_to")
  local ro = self._ro
  if ro.kind ~= "listener" or ro.scheme ~= "udp" then raise("send_to: " .. describe(self) .. " is not a udp listener") end
  if type(addr) ~= "string" then argerr("send_to", "addr", "string", addr) end
  if type(data) ~= "string" then argerr("send_to", "data", "string", data) end
  local r = C.wss_udp_send_to(p, ro.id, addr, data, #data)
  if r ~= R_OK then return fail_conn(m, r, self) end
  return true
end

--- Closes gracefully: WebSocket connections get a close frame (`code`, default 1000, and
--- `reason`); others flush what is buffered first. Closing twice is harmless.
function Conn:close(code, reason)
  if getmetatable(self) ~= Conn then argerr("close", "conn", "connection", self) end
  local m = self._m
  local p = m._p
  local ro = self._ro
  if p == nil or ro.closed then return true end
  local r
  if ro.kind == "ws" and HAS_WS then
    if code == nil then code = 1000 end
    check_integer("close", "argument 'code'", code, 0, 65535, "integer close code")
    if reason ~= nil and type(reason) ~= "string" then argerr("close", "reason", "string", reason) end
    r = C.wss_ws_close(p, ro.id, code, reason)
    if r == R_INVALID_STATE or r == R_WRONG_KIND then r = C.wss_conn_close(p, ro.id, true) end
  else
    if code ~= nil or reason ~= nil then
      raise("close: a close code and reason apply only to WebSocket connections; " .. describe(self) .. " is not one")
    end
    r = C.wss_conn_close(p, ro.id, true)
  end
  -- NOT_FOUND: the close event was drained, not yet handled; closing twice is harmless.
  if r == R_OK or r == R_CLOSED or r == R_NOT_FOUND then return true end
  return fail(m, r)
end

--- Closes at once, dropping what is buffered.
function Conn:abort()
  if getmetatable(self) ~= Conn then argerr("abort", "conn", "connection", self) end
  local m = self._m
  local p = m._p
  local ro = self._ro
  if p == nil or ro.closed then return true end
  local r = C.wss_conn_close(p, ro.id, false)
  if r == R_OK or r == R_CLOSED or r == R_NOT_FOUND then return true end
  return fail(m, r)
end

local function S(s) return ffi_string(s.ptr, s.len) end

local function address(self, fname, fn)
  local p, m = check_conn(self, fname)
  local r = fn(p, self._ro.id, addr_buf, ffi_sizeof(addr_buf), size_out)
  if r ~= R_OK then return fail_conn(m, r, self) end
  return ffi_string(addr_buf, size_out[0])
end

--- The peer's address "ip:port" (for a udp listener: the last sender).
function Conn:peer() return address(self, "peer", C.wss_conn_peer) end

--- The local address "ip:port".
function Conn:local_address() return address(self, "local_address", C.wss_conn_local) end

--- The port a listener is bound to.
function Conn:port()
  local p, m = check_conn(self, "port")
  if self._ro.kind ~= "listener" then raise("port: " .. describe(self) .. " is not a listener") end
  local r = C.wss_listener_port(p, self._ro.id, port_out)
  if r ~= R_OK then return fail_conn(m, r, self) end
  return port_out[0]
end

--- Bytes waiting in the send buffer.
function Conn:buffered()
  local p, m = check_conn(self, "buffered")
  local r = C.wss_conn_buffered(p, self._ro.id, size_out)
  if r ~= R_OK then return fail_conn(m, r, self) end
  return tonumber(size_out[0])
end

--- What a TLS connection negotiated: { version, cipher, alpn, sni, peer_identity }.
function Conn:tls_info()
  local p, m = check_conn(self, "tls_info")
  local r = C.wss_conn_tls_info(p, self._ro.id, tls_out)
  if r ~= R_OK then return fail_conn(m, r, self) end
  local t = tls_out[0]
  local function opt(s) return s.len > 0 and S(s) or nil end
  return { version = S(t.version), cipher = S(t.cipher), alpn = opt(t.alpn), sni = opt(t.sni),
           peer_identity = opt(t.peer_identity) }
end

Conn.__tostring = describe
Manager.__tostring = function(m) return m._p ~= nil and "manager" or "manager (closed)" end
Timer.__tostring = function(t) return str_format("timer %d", t._ro.id) end

return M
