--- LibMongoose.ws: WebSocket: the upgrade of an HTTP request (res:upgrade) and the calls
--- that only an open WebSocket takes (fragments, pings, pongs, broadcasts). Messages
--- are sent with conn:send (LibMongoose.core), which serves every kind of connection.
local ffi = require("ffi")
local base = require("LibMongoose.base")
local options = require("LibMongoose.options")
local core = require("LibMongoose.core")
local http = require("LibMongoose.http")
base.internal()

local ffi_new, ffi_string, ffi_sizeof = ffi.new, ffi.string, ffi.sizeof
local type, tonumber, pairs, getmetatable, rawset = type, tonumber, pairs, getmetatable, rawset
local str_format = string.format

local C = base.C
local R = base.RESULTS
local R_OK, R_NOT_FOUND, R_CLOSED, R_PROTOCOL = R.OK, R.NOT_FOUND, R.CLOSED, R.PROTOCOL
local OP = base.OP
local OP_CONTINUATION, OP_PING, OP_PONG = OP.CONTINUATION, OP.PING, OP.PONG
local HAS_WS, ws_opcode = base.HAS_WS, base.ws_opcode
local raise, argerr, typeof, show_key, fail = base.raise, base.argerr, base.typeof, base.show_key, base.fail
local check_header, header_lines, HANDLERS = options.check_header, options.header_lines, options.HANDLERS
local check_mgr, check_conn, fail_conn, describe, own_handlers = core.check_mgr, core.check_conn, core.fail_conn,
  core.describe, core.own_handlers
local check_res, header_block = http.check_res, http.header_block

local Manager, Conn, Response = base.Manager, base.Conn, base.Response

local M = {}

local size_out = ffi_new("size_t[1]")

--- check_conn, and misuse unless `c` is a WebSocket connection.
local function check_ws(c, fname)
  if getmetatable(c) ~= Conn then
    raise(str_format("%s: bad argument 'conn' (connection expected, got %s)", fname, typeof(c)))
  end
  local m = c._m
  local p = m._p
  if p == nil then raise(fname .. ": the manager of " .. describe(c) .. " is closed") end
  local ro = c._ro
  if ro.closed then raise(fname .. ": " .. describe(c) .. " is closed") end
  if ro.kind ~= "ws" then raise(fname .. ": " .. describe(c) .. " is not a WebSocket connection") end
  if not HAS_WS then raise(fname .. ": this libwsserver has no WebSocket API") end
  return p, m
end

---------------------------------------------------------------------------------------
-- The upgrade

-- The handlers among `t` become connection `c`'s own.
local function add_handlers(fname, c, t)
  local own
  for k, v in pairs(t) do
    if HANDLERS[k] then
      if type(v) ~= "function" then
        raise(str_format("%s: bad handler '%s' (function expected, got %s)", fname, k, typeof(v)))
      end
      own = own or own_handlers(c)
      rawset(own, k, v)
    end
  end
end

--- Upgrades the connection to WebSocket. `opts`: protocol, headers, and handlers for
--- the connection (ws_open, ws_message, ws_close...). Returns the connection or fail.
function Response:upgrade(opts)
  local p = check_res(self, "upgrade")
  if not HAS_WS then raise("upgrade: this libwsserver has no WebSocket API") end
  if self._chunked then raise("upgrade: the response has started") end
  local o, anchor
  if opts ~= nil then
    if type(opts) ~= "table" then argerr("upgrade", "opts", "table", opts) end
    anchor = {}
    for k, v in pairs(opts) do
      if k == "protocol" then
        if type(v) ~= "string" then raise("upgrade: bad option 'protocol' (string expected)") end
        check_header("upgrade", "Sec-WebSocket-Protocol", v, " in option 'protocol'")
        o = o or ffi_new("wss_upgrade_opts")
        o.protocol = v; anchor[#anchor + 1] = v
      elseif k == "headers" then
        v = header_lines("upgrade", "headers", v)
        o = o or ffi_new("wss_upgrade_opts")
        o.extra_headers = v; anchor[#anchor + 1] = v
      elseif not HANDLERS[k] then
        raise(str_format("upgrade: unknown option %s", show_key(k)))
      end
    end
    if o then o.struct_size = ffi_sizeof("wss_upgrade_opts") end
  end
  if self._hdrs then
    local extra = header_block(self, nil)
    o = o or ffi_new("wss_upgrade_opts")
    o.struct_size = ffi_sizeof("wss_upgrade_opts")
    if o.extra_headers ~= nil then extra = ffi_string(o.extra_headers) .. extra end
    anchor = anchor or {}
    anchor[#anchor + 1] = extra
    o.extra_headers = extra
  end
  self._anchor = anchor
  local r = C.wss_ws_upgrade(p, self._id, o)
  self._anchor = nil
  if r ~= R_OK then
    -- PROTOCOL: not a valid upgrade, and the library has answered it (400/403/426).
    if r == R_CLOSED or r == R_NOT_FOUND or r == R_PROTOCOL then self.done = true end
    return fail_conn(self._m, r, self.conn)
  end
  self.done = true
  local c = self.conn
  c._ro.kind = "ws"
  if opts then add_handlers("upgrade", c, opts) end
  return c
end

---------------------------------------------------------------------------------------
-- Open WebSockets

--- Sends one fragment of a WebSocket message: `kind` ("text"/"binary") on the first,
--- `fin` true on the last.
function Conn:send_fragment(data, kind, fin)
  local p, m = check_ws(self, "send_fragment")
  if type(data) ~= "string" then argerr("send_fragment", "data", "string", data) end
  if fin ~= nil and type(fin) ~= "boolean" then argerr("send_fragment", "fin", "boolean", fin) end
  local op
  if self._frag then
    if kind ~= nil and kind ~= self._frag then
      raise("send_fragment: a " .. self._frag .. " message is under way; finish it first")
    end
    op = OP_CONTINUATION
  else
    op = ws_opcode("send_fragment", kind)
  end
  local r = C.wss_ws_send_fragment(p, self._ro.id, data, #data, op, fin and true or false)
  if r ~= R_OK then return fail_conn(m, r, self) end
  if fin then self._frag = nil else self._frag = self._frag or kind or "text" end
  return true
end

local function control(self, fname, op, data)
  local p, m = check_ws(self, fname)
  if data == nil then data = "" end
  if type(data) ~= "string" then argerr(fname, "data", "string", data) end
  local r = C.wss_ws_send(p, self._ro.id, data, #data, op)
  if r ~= R_OK then return fail_conn(m, r, self) end
  return true
end

--- Sends a WebSocket ping (payload up to 125 bytes).
function Conn:ping(data) return control(self, "ping", OP_PING, data) end

--- Sends an unsolicited WebSocket pong.
function Conn:pong(data) return control(self, "pong", OP_PONG, data) end

--- Sends `data` to every open WebSocket connection of this listener; returns how many.
function Conn:broadcast(data, kind)
  local p, m = check_conn(self, "broadcast")
  local ro = self._ro
  if ro.kind ~= "listener" then raise("broadcast: " .. describe(self) .. " is not a listener") end
  if type(data) ~= "string" then argerr("broadcast", "data", "string", data) end
  local op = ws_opcode("broadcast", kind)
  local s = ro.scheme
  if s ~= "http" and s ~= "https" and s ~= "ws" and s ~= "wss" then
    raise("broadcast: " .. describe(self) .. " does not accept WebSocket connections")
  end
  if not HAS_WS then raise("broadcast: this libwsserver has no WebSocket API") end
  local r = C.wss_ws_broadcast(p, ro.id, data, #data, op, size_out)
  if r ~= R_OK then return fail_conn(m, r, self) end
  return tonumber(size_out[0])
end

--- Sends `data` to every open WebSocket connection of the manager; returns how many.
function Manager:broadcast(data, kind)
  local p = check_mgr(self, "broadcast")
  if type(data) ~= "string" then argerr("broadcast", "data", "string", data) end
  local op = ws_opcode("broadcast", kind)
  if not HAS_WS then raise("broadcast: this libwsserver has no WebSocket API") end
  local r = C.wss_ws_broadcast(p, 0, data, #data, op, size_out)
  if r ~= R_OK then return fail(self, r) end
  return tonumber(size_out[0])
end

return M
