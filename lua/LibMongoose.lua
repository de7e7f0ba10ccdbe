--- LibMongoose: the friendly LuaJIT layer of libwsserver.
--
--   local lm = require("LibMongoose")
--   local mgr = lm.new()
--   local app = lm.router()
--   app:get("/hello/:name", function(req, res) res:json({ hello = req.params.name }) end)
--   assert(mgr:listen("http://127.0.0.1:8000", { http = app }))
--   mgr:run()
--
-- Managers, listeners, connections and timers are objects; every method also works as a
-- plain function (`mgr:listen(url)` and `lm.listen(mgr, url)`). Misuse (wrong argument
-- types, a closed manager or connection, a WebSocket call on a plain connection) raises a
-- Lua error naming the function; runtime failures return `nil, "ENAME: message", "ENAME"`
-- as luv does. The full reference is docs/lua-api.md.
--
-- Nothing calls back from C: `poll` pulls events from the manager in batches and calls the
-- Lua handlers. Event payloads are copied into Lua strings at once, so nothing a handler
-- sees can dangle.
local ffi = require("ffi")
local bit = require("bit")
local mg = require("mongoose")

local C = mg.bindings
local EV = mg.events
local RESULTS = mg.results

local ffi_new, ffi_string, ffi_gc, ffi_sizeof, ffi_cast = ffi.new, ffi.string, ffi.gc, ffi.sizeof, ffi.cast
local band = bit.band
local type, tostring, tonumber, error, select, next = type, tostring, tonumber, error, select, next
local setmetatable, getmetatable, rawget, rawset = setmetatable, getmetatable, rawget, rawset
local pairs, ipairs, pcall, xpcall = pairs, ipairs, pcall, xpcall
local str_byte, str_char, str_format, str_gsub = string.byte, string.char, string.format, string.gsub
local str_lower, str_sub, str_find, str_match, str_gmatch = string.lower, string.sub, string.find, string.match, string.gmatch
local tconcat, traceback, floor, huge = table.concat, debug.traceback, math.floor, math.huge

-- access(2), for lm.static: whether a path names something readable, without opening
-- it (an open(2) of a FIFO blocks until a writer comes). Another module may have
-- declared it already.
pcall(ffi.cdef, "int access(const char *path, int mode);")
local C_access, R_OK_ACCESS = ffi.C.access, 4

local lm = {}

--- True when the loaded libwsserver has the WebSocket API (wss_ws_send...).
local HAS_WS = pcall(function() return C.wss_ws_send end)

local EV_LISTEN, EV_ACCEPT, EV_CONNECT, EV_READ = EV.LISTEN, EV.ACCEPT, EV.CONNECT, EV.READ
local EV_HTTP_MSG, EV_WS_OPEN, EV_WS_MSG, EV_WS_FRAGMENT = EV.HTTP_MSG, EV.WS_OPEN, EV.WS_MSG, EV.WS_FRAGMENT
local EV_WS_CTL, EV_DRAIN, EV_TIMER, EV_WAKEUP = EV.WS_CTL, EV.DRAIN, EV.TIMER, EV.WAKEUP
local EV_ERROR, EV_CLOSE, EV_TLS_READY = EV.ERROR, EV.CLOSE, EV.TLS_READY

-- wss_flag and wss_opcode values (fixed by the C API).
local FLAG_TEXT, FLAG_BINARY, FLAG_FIN, FLAG_FIRST, FLAG_BY_PEER = 1, 2, 4, 8, 16
local OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_PING, OP_PONG = 0, 1, 2, 9, 10
local WS_KINDS = { text = OP_TEXT, binary = OP_BINARY }

local R_OK = 0
local R_NOT_FOUND = RESULTS.NOT_FOUND
local R_CLOSED = RESULTS.CLOSED
local R_INVALID_STATE = RESULTS.INVALID_STATE
local R_WRONG_KIND = RESULTS.WRONG_KIND
local R_PROTOCOL = RESULTS.PROTOCOL

local NO_TIMEOUT = 0xFFFFFFFF
local MAX_INT = 2 ^ 53 -- integers above are not exact in a Lua number
local BATCH = 64 -- events taken per wss_mgr_next_events call

-- Out-parameters, allocated once (lua-resty-core style). Their values are read right
-- after each call, so sharing them between managers is safe.
local id_out = ffi_new("wss_id[1]")
local size_out = ffi_new("size_t[1]")
local port_out = ffi_new("uint16_t[1]")
local str_out = ffi_new("wss_str[1]")
local str_out2 = ffi_new("wss_str[1]")
local req_out = ffi_new("wss_http_request[1]")
local tls_out = ffi_new("wss_tls_info[1]")
local addr_buf = ffi_new("char[256]")
local digest_buf = ffi_new("uint8_t[20]")
local hex41 = ffi_new("char[41]")

-- A scratch buffer for the utilities, grown on demand; large one-off requests get their
-- own allocation so that the shared buffer stays small.
local scratch, scratch_cap = ffi_new("uint8_t[?]", 4096), 4096
local function get_buf(n)
  if n <= scratch_cap then return scratch end
  if n <= 1048576 then
    local cap = scratch_cap
    while cap < n do cap = cap * 2 end
    scratch, scratch_cap = ffi_new("uint8_t[?]", cap), cap
    return scratch
  end
  return ffi_new("uint8_t[?]", n)
end

---------------------------------------------------------------------------------------
-- Classes. Method tables double as metatables.

local Manager = {}
Manager.__index = Manager
local Conn = {}
local Timer = {}
local Request = {}
Request.__index = Request
local Response = {}
Response.__index = Response
local Router = {}
Router.__index = Router
local Attachment = {}
Attachment.__index = Attachment

local CLASS_NAMES = {
  [Manager] = "manager", [Conn] = "connection", [Timer] = "timer", [Request] = "request",
  [Response] = "response", [Router] = "router", [Attachment] = "attachment",
}

-- Raises a misuse error reported at the first caller outside this file, however deep
-- inside the module the misuse was noticed (tail calls and helpers change the depth,
-- so a fixed error level would point at the wrong line).
local THIS_SOURCE = debug.getinfo(1, "S").source
local getinfo = debug.getinfo
local function raise(msg)
  local level = 2
  while true do
    local info = getinfo(level, "S")
    if not info then break end
    if info.source ~= THIS_SOURCE and info.what ~= "C" and info.what ~= "tail" then break end
    level = level + 1
  end
  error(msg, level)
end

-- The fields of connections and timers that the module relies on (an id above all:
-- a program that assigned one would act on another object) are read-only. They live in
-- a table of their own, `_ro`, read through __index; assigning one is misuse. Other
-- fields (`data`, the program's own) are plain.
local CONN_RO = { id = true, kind = true, listener = true, closed = true, url = true, scheme = true,
                  client = true, target = true, protocol = true }
local TIMER_RO = { id = true, repeating = true, active = true }
local describe

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

local function typeof(v)
  if type(v) == "table" then
    local mt = getmetatable(v)
    local name = mt and CLASS_NAMES[mt]
    if name == "connection" and v.kind == "listener" then return "listener" end
    if name then return name end
  end
  return type(v)
end

-- Misuse: a bad argument.
local function argerr(fname, what, expected, got)
  raise(str_format("%s: bad argument '%s' (%s expected, got %s)", fname, what, expected, typeof(got)))
end

-- An offending value as error messages show it: a string quoted, with control
-- characters escaped, and cut after 64 bytes (a 1 MB bad value makes a short message);
-- a number as it prints; anything else by its type.
local SHOW_MAX = 64
local ESCAPES = { ["\r"] = "\\r", ["\n"] = "\\n", ["\t"] = "\\t", ["\0"] = "\\0", ['"'] = '\\"', ["\\"] = "\\\\" }
local function escape_char(c) return ESCAPES[c] or str_format("\\x%02X", str_byte(c)) end
local function show(v)
  if type(v) == "number" then return tostring(v) end
  if type(v) ~= "string" then return typeof(v) end
  local n = #v
  local s = '"' .. str_gsub(n > SHOW_MAX and str_sub(v, 1, SHOW_MAX) or v, '[%c"\\]', escape_char) .. '"'
  if n > SHOW_MAX then s = s .. str_format("... (%d bytes)", n) end
  return s
end

-- An option or handler name as messages show it: 'name' when it is short and plain,
-- else as show() does.
local function show_key(k)
  if type(k) == "string" and #k <= SHOW_MAX and not str_find(k, "[%c']") then return "'" .. k .. "'" end
  return show(k)
end

-- The check of every number LibMongoose takes (timeouts, intervals, ids, sizes, codes,
-- header values): misuse unless `v` is a finite number. NaN and the infinities pass or
-- fail comparisons in surprising ways (NaN < 1 and NaN >= 1 are both false), so they
-- are refused before any range check. `what` names the value: "argument 'ms'",
-- "option 'interval'", "value for header \"X\"".
local function check_number(fname, what, v, expected)
  if type(v) ~= "number" then
    raise(str_format("%s: bad %s (%s expected, got %s)", fname, what, expected or "number", typeof(v)))
  end
  if v ~= v or v == huge or v == -huge then
    raise(str_format("%s: bad %s (finite number expected, got %s)", fname, what, tostring(v)))
  end
  return v
end

-- check_number, then an integer from lo to hi.
local function check_integer(fname, what, v, lo, hi, expected)
  check_number(fname, what, v, expected)
  if v ~= floor(v) or v < lo or v > hi then
    raise(str_format("%s: bad %s (%s expected, got %s)", fname, what, expected, show(v)))
  end
  return v
end

-- The check of every header LibMongoose writes, whatever the path: res:set and its
-- kin, header tables and blocks in options (res:file, res:dir, lm.static, res:upgrade,
-- app:ws, connect's ws_headers), content types, subprotocols, origins. The name must be
-- a token; the value (a string, or a finite number) may hold no control character but
-- tab: a CR, LF or NUL would end the line and start another (header injection), or cut
-- the C string short. Returns the value as a string. `where`: "" or " in option 'x'".
local TOKEN = "^[!#$%%&'*+%-.^_`|~%w]+$"
local function check_header(fname, name, value, where)
  if type(name) ~= "string" then
    raise(str_format("%s: bad header name%s (string expected, got %s)", fname, where, typeof(name)))
  end
  if not str_find(name, TOKEN) then
    raise(str_format("%s: bad header name %s%s (a token expected)", fname, show(name), where))
  end
  if type(value) == "number" then
    check_number(fname, "value for header " .. show(name) .. where, value)
    if value == floor(value) and value > -2 ^ 63 and value < 2 ^ 63 then return str_format("%d", value) end
    return tostring(value)
  end
  if type(value) ~= "string" then
    raise(str_format("%s: bad value for header %s%s (string or number expected, got %s)", fname, show(name), where,
                     typeof(value)))
  end
  if str_find(value, "[%z\1-\8\10-\31\127]") then
    raise(str_format("%s: bad value for header %s%s (CR, LF, NUL or another control character in %s)", fname,
                     show(name), where, show(value)))
  end
  return value
end

-- Runtime failure: nil, "ENAME: message", "ENAME" (luv style).
local function fail(m, r)
  local name = RESULTS[r] or tostring(r)
  local msg
  local p = m and m._p
  if p ~= nil then msg = ffi_string(C.wss_mgr_last_error(p)) end
  if msg == nil or msg == "" then msg = ffi_string(C.wss_result_str(r)) end
  return nil, name .. ": " .. msg, name
end

local function check_mgr(m, fname)
  if getmetatable(m) ~= Manager then
    raise(str_format("%s: bad argument 'mgr' (manager expected, got %s)", fname, typeof(m)))
  end
  local p = m._p
  if p == nil then raise(fname .. ": the manager is closed") end
  return p
end

function describe(c)
  local ro = c._ro
  if ro.kind == "listener" then
    local url = ro.url or "?"
    if #url > SHOW_MAX then url = str_sub(url, 1, SHOW_MAX) .. "..." end
    return str_format("listener %d (%s)", ro.id, url)
  end
  return str_format("connection %d (%s)", ro.id, ro.kind)
end

-- A call on connection `c` failed with result `r`. NOT_FOUND means the library has
-- forgotten the id; it issued it, so the connection closed and its close event was
-- drained (maybe not yet handled): that is CLOSED for the program, as documented.
local function fail_conn(m, r, c)
  if r == R_NOT_FOUND then return nil, "CLOSED: " .. describe(c) .. " is closed", "CLOSED" end
  return fail(m, r)
end

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
-- Strings and URLs

local function hex_to_char(h) return str_char(tonumber(h, 16)) end
local function char_to_hex(c) return str_format("%%%02X", str_byte(c)) end

--- Percent-decodes `s`; with `plus`, "+" becomes a space (form encoding).
function lm.url_decode(s, plus)
  if type(s) ~= "string" then argerr("url_decode", "s", "string", s) end
  if plus then s = str_gsub(s, "+", " ") end
  return (str_gsub(s, "%%(%x%x)", hex_to_char))
end
local url_decode = lm.url_decode

--- Percent-encodes every byte of `s` outside A-Z a-z 0-9 - . _ ~
function lm.url_encode(s)
  if type(s) ~= "string" then argerr("url_encode", "s", "string", s) end
  return (str_gsub(s, "[^%w%-%._~]", char_to_hex))
end

--- Parses "a=1&b=2&b=3" into { a = "1", b = { "2", "3" } } (decoded; "+" is a space).
function lm.parse_query(qs)
  if type(qs) ~= "string" then argerr("parse_query", "qs", "string", qs) end
  local t = {}
  for pair in str_gmatch(qs, "[^&;]+") do
    local k, v = str_match(pair, "^([^=]*)=(.*)$")
    if not k then k, v = pair, "" end
    k, v = url_decode(k, true), url_decode(v, true)
    local old = t[k]
    if old == nil then
      t[k] = v
    elseif type(old) == "table" then
      old[#old + 1] = v
    else
      t[k] = { old, v }
    end
  end
  return t
end
local parse_query = lm.parse_query

-- Header tables: keys are stored lower-case and looked up case-insensitively.
local Headers = {
  __index = function(t, k)
    if type(k) == "string" then return rawget(t, str_lower(k)) end
  end,
  __newindex = function(t, k, v)
    if type(k) == "string" then k = str_lower(k) end
    rawset(t, k, v)
  end,
}

---------------------------------------------------------------------------------------
-- Options: Lua tables to C structs. Unknown keys are misuse (they are typos).

local HANDLERS = {
  listen = true, accept = true, connect = true, read = true, http = true, ws_open = true,
  ws_message = true, ws_fragment = true, ws_ctl = true, ws_close = true, drain = true,
  timer = true, wakeup = true, error = true, close = true, tls_ready = true,
}

-- kind: "u32", "u64", "ms" (timeout: number, false or lm.NO_TIMEOUT), "bool", "str", "list",
-- "protocols" (a list that goes out as Sec-WebSocket-Protocol), "origin" (the Origin
-- header), "headers" (header lines)
local LISTEN_FIELDS = {
  max_connections = "u32", backlog = "u32", max_header_bytes = "u32", max_uri_bytes = "u32",
  max_queued_events = "u32", max_body_bytes = "u64", max_frame_bytes = "u64",
  max_message_bytes = "u64", max_send_buffer = "u64", send_low_water = "u64",
  max_queued_bytes = "u64", header_timeout_ms = "ms", body_timeout_ms = "ms",
  idle_timeout_ms = "ms", ping_interval_ms = "ms", pong_timeout_ms = "ms",
  close_timeout_ms = "ms", tls_handshake_timeout_ms = "ms", reuse_port = "bool",
  ws_deflate = "bool", ws_stream = "bool", tls_client_cert_optional = "bool",
  tls_cert = "str", tls_key = "str", tls_client_ca = "str", ws_origins = "list",
  ws_protocols = "protocols",
}

local CONNECT_FIELDS = {
  idle_timeout_ms = "ms", max_send_buffer = "u64", max_frame_bytes = "u64",
  max_message_bytes = "u64", tls_insecure_skip_verify = "bool", ws_deflate = "bool",
  ws_stream = "bool", tls_ca = "str", tls_cert = "str", tls_key = "str",
  tls_server_name = "str", ws_protocols = "protocols", ws_origin = "origin", ws_headers = "headers",
}

-- "Name: value\r\n" lines from a { name = value } table, or a string of such lines
-- (passed on as it is; LF alone ends a line too). Every header goes through
-- check_header; in a string, a line that is not "Name: value" (a blank line would end
-- the head) is misuse as well.
local function header_lines(fname, what, v)
  local where = " in option '" .. what .. "'"
  if type(v) == "string" then
    local pos, n = 1, #v
    while pos <= n do
      local e = str_find(v, "\n", pos, true)
      local line = str_sub(v, pos, (e or n + 1) - 1)
      if e and str_byte(line, -1) == 13 then line = str_sub(line, 1, -2) end
      local name, value = str_match(line, "^([^:]*):[ \t]*(.-)[ \t]*$")
      if not name then
        raise(str_format("%s: bad header line %s%s (\"Name: value\" expected)", fname, show(line), where))
      end
      check_header(fname, name, value, where)
      pos = (e or n) + 1
    end
    return v
  end
  if type(v) ~= "table" then argerr(fname, what, "string or table", v) end
  local out = {}
  for k, val in pairs(v) do
    out[#out + 1] = k .. ": " .. check_header(fname, k, val, where) .. "\r\n"
  end
  return tconcat(out)
end

-- A list of WebSocket subprotocols (a list, or a comma-separated string), which goes
-- out in a Sec-WebSocket-Protocol header.
local function protocol_list(fname, name, v)
  local where = " in option '" .. name .. "'"
  if type(v) == "table" then
    for i = 1, #v do
      if type(v[i]) ~= "string" then
        raise(str_format("%s: bad option '%s' (list of strings expected)", fname, name))
      end
      check_header(fname, "Sec-WebSocket-Protocol", v[i], where)
    end
    return tconcat(v, ",")
  elseif type(v) ~= "string" then
    raise(str_format("%s: bad option '%s' (string or list of strings expected, got %s)", fname, name, typeof(v)))
  end
  return check_header(fname, "Sec-WebSocket-Protocol", v, where)
end

-- Sets field `name` of C struct `o` from option value `v`. `label`: the option's name
-- in messages, when it is not `name` ("tls.handshake_timeout_ms").
local function set_field(fname, o, name, kind, v, anchor, label)
  label = label or name
  local ok = pcall(function() return o[name] end)
  if not ok then raise(str_format("%s: option '%s' is not supported by this libwsserver", fname, label)) end
  if kind == "u32" or kind == "u64" or kind == "ms" then
    if kind == "ms" and (v == false or v == NO_TIMEOUT) then
      o[name] = NO_TIMEOUT
      return
    end
    check_integer(fname, "option '" .. label .. "'", v, 0, kind == "u64" and MAX_INT - 1 or NO_TIMEOUT - 1,
                  "non-negative integer")
    o[name] = v
  elseif kind == "bool" then
    if type(v) ~= "boolean" then
      raise(str_format("%s: bad option '%s' (boolean expected, got %s)", fname, name, typeof(v)))
    end
    o[name] = v
  elseif kind == "str" then
    if type(v) ~= "string" then
      raise(str_format("%s: bad option '%s' (string expected, got %s)", fname, name, typeof(v)))
    end
    anchor[#anchor + 1] = v
    o[name] = v
  elseif kind == "list" then
    if type(v) == "table" then
      for i = 1, #v do
        if type(v[i]) ~= "string" then
          raise(str_format("%s: bad option '%s' (list of strings expected)", fname, name))
        end
      end
      v = tconcat(v, ",")
    elseif type(v) ~= "string" then
      raise(str_format("%s: bad option '%s' (string or list of strings expected, got %s)", fname, name, typeof(v)))
    end
    anchor[#anchor + 1] = v
    o[name] = v
  elseif kind == "protocols" then
    v = protocol_list(fname, label, v)
    anchor[#anchor + 1] = v
    o[name] = v
  elseif kind == "origin" then
    if type(v) ~= "string" then
      raise(str_format("%s: bad option '%s' (string expected, got %s)", fname, label, typeof(v)))
    end
    check_header(fname, "Origin", v, " in option '" .. label .. "'")
    anchor[#anchor + 1] = v
    o[name] = v
  elseif kind == "headers" then
    v = header_lines(fname, label, v)
    anchor[#anchor + 1] = v
    o[name] = v
  end
end

-- Splits an options table into the C struct (or nil when there is nothing to set), the
-- handler table (or nil) and the anchor list that keeps generated strings alive.
local function build_opts(fname, opts, ctype, fields, tls_map)
  if opts == nil then return nil, nil, nil end
  if type(opts) ~= "table" then argerr(fname, "opts", "table", opts) end
  local o, handlers, anchor
  anchor = {}
  for k, v in pairs(opts) do
    if HANDLERS[k] then
      if type(v) ~= "function" and not (k == "http" and getmetatable(v) == Router) then
        raise(str_format("%s: bad handler '%s' (function expected, got %s)", fname, k, typeof(v)))
      end
      handlers = handlers or {}
      handlers[k] = v
    elseif k == "tls" then
      if type(v) ~= "table" then
        raise(str_format("%s: bad option 'tls' (table expected, got %s)", fname, typeof(v)))
      end
    elseif fields[k] then
      o = o or ffi_new(ctype)
      set_field(fname, o, k, fields[k], v, anchor)
    else
      raise(str_format("%s: unknown option %s", fname, show_key(k)))
    end
  end
  local tls = opts.tls
  if tls then
    o = o or ffi_new(ctype)
    tls_map(fname, o, tls, anchor)
  end
  if o then o.struct_size = ffi_sizeof(ctype) end
  return o, handlers, anchor
end

local function listen_tls(fname, o, t, anchor)
  for k, v in pairs(t) do
    if k == "cert" then set_field(fname, o, "tls_cert", "str", v, anchor)
    elseif k == "key" then set_field(fname, o, "tls_key", "str", v, anchor)
    elseif k == "ca" or k == "client_ca" then set_field(fname, o, "tls_client_ca", "str", v, anchor)
    elseif k == "verify" then
      if v ~= true and v ~= "optional" and v ~= "required" then
        raise(fname .. ": bad option 'tls.verify' (true, \"required\" or \"optional\" expected)")
      end
      o.tls_client_cert_optional = (v == "optional")
    elseif k == "handshake_timeout_ms" then
      set_field(fname, o, "tls_handshake_timeout_ms", "ms", v, anchor, "tls.handshake_timeout_ms")
    elseif k == "sni" then
      if type(v) ~= "table" then raise(fname .. ": bad option 'tls.sni' (list of {cert=, key=} expected)") end
      local n = #v
      local arr = ffi_new("wss_tls_cert[?]", n > 0 and n or 1)
      for i = 1, n do
        local e = v[i]
        if type(e) ~= "table" or type(e.cert) ~= "string" or type(e.key) ~= "string" then
          raise(fname .. ": bad option 'tls.sni' (list of {cert=, key=} expected)")
        end
        anchor[#anchor + 1] = e.cert
        anchor[#anchor + 1] = e.key
        arr[i - 1].cert = e.cert
        arr[i - 1].key = e.key
      end
      anchor[#anchor + 1] = arr
      o.tls_sni = arr
      o.tls_sni_count = n
    else
      raise(str_format("%s: unknown option %s", fname, show_key(type(k) == "string" and "tls." .. k or k)))
    end
  end
end

local function connect_tls(fname, o, t, anchor)
  for k, v in pairs(t) do
    if k == "ca" then set_field(fname, o, "tls_ca", "str", v, anchor)
    elseif k == "cert" then set_field(fname, o, "tls_cert", "str", v, anchor)
    elseif k == "key" then set_field(fname, o, "tls_key", "str", v, anchor)
    elseif k == "server_name" then set_field(fname, o, "tls_server_name", "str", v, anchor)
    elseif k == "verify" then
      if type(v) ~= "boolean" then raise(fname .. ": bad option 'tls.verify' (boolean expected)") end
      o.tls_insecure_skip_verify = not v
    else
      raise(str_format("%s: unknown option %s", fname, show_key(type(k) == "string" and "tls." .. k or k)))
    end
  end
end

---------------------------------------------------------------------------------------
-- Managers

local MGR_FIELDS = { max_connections = "u32", max_threadsafe_bytes = "u64" }

--- Creates a manager. `opts`: { max_connections = n, max_threadsafe_bytes = n } and
--- handler functions.
function lm.new(opts)
  local o, handlers
  if opts ~= nil then
    if type(opts) ~= "table" then argerr("new", "opts", "table", opts) end
    for k, v in pairs(opts) do
      if HANDLERS[k] then
        if type(v) ~= "function" and not (k == "http" and getmetatable(v) == Router) then
          raise(str_format("new: bad handler '%s' (function expected, got %s)", k, typeof(v)))
        end
        handlers = handlers or {}
        handlers[k] = v
      elseif MGR_FIELDS[k] then
        o = o or ffi_new("wss_mgr_opts")
        o.struct_size = ffi_sizeof("wss_mgr_opts")
        set_field("new", o, k, MGR_FIELDS[k], v, nil)
      else
        raise(str_format("new: unknown option %s", show_key(k)))
      end
    end
  end
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

local release_attachment, complete_close -- below, with the luv interop

--- Frees the manager: closes every listener and connection at once (no close handlers
--- run). Closing twice is harmless.
function Manager:close()
  if getmetatable(self) ~= Manager then argerr("close", "mgr", "manager", self) end
  local p = self._p
  if p == nil then return true end
  local a = self._attached
  if a then release_attachment(a) end
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
  if a then complete_close(a._uv) end
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
  if fn ~= nil and type(fn) ~= "function" and not (name == "http" and getmetatable(fn) == Router) then
    argerr("on", "fn", "function", fn)
  end
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
  local o, handlers, anchor = build_opts("listen", opts, "wss_listen_opts", LISTEN_FIELDS, listen_tls)
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
  local o, handlers, anchor = build_opts("connect", opts, "wss_connect_opts", CONNECT_FIELDS, connect_tls)
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
-- Requests and responses

local function S(s) return ffi_string(s.ptr, s.len) end

local function new_request(m, c, cid)
  local p = m._p
  local req = setmetatable({ conn = c, params = {} }, Request)
  local headers = setmetatable({}, Headers)
  req.headers = headers
  if C.wss_http_request_get(p, cid, req_out) ~= R_OK then
    -- Cannot happen for a request event just drained; keep the object usable anyway.
    req.method, req.path, req.target, req.query_string, req.version, req.body = "GET", "/", "/", "", "HTTP/1.1", ""
    req.query = {}
    return req
  end
  local q = req_out[0]
  req.method = S(q.method)
  req.path = S(q.path)
  req.target = S(q.target)
  req.query_string = S(q.query)
  req.version = S(q.version)
  req.body = S(q.body)
  local list = {}
  for i = 0, tonumber(q.header_count) - 1 do
    if C.wss_http_header_at(p, cid, i, str_out, str_out2) == R_OK then
      local name, value = S(str_out[0]), S(str_out2[0])
      list[#list + 1] = { name, value }
      local k = str_lower(name)
      local old = rawget(headers, k)
      rawset(headers, k, old and (old .. ", " .. value) or value)
    end
  end
  req.header_list = list
  req.query = req.query_string ~= "" and parse_query(req.query_string) or {}
  return req
end

--- The value of header `name` (case-insensitive; repeated headers joined with ", ").
function Request:header(name)
  if getmetatable(self) ~= Request then argerr("header", "req", "request", self) end
  if type(name) ~= "string" then argerr("header", "name", "string", name) end
  return rawget(self.headers, str_lower(name))
end

--- The body decoded as JSON, or nil, err.
local cjson
local function get_cjson(fname)
  if cjson == nil then
    local ok, mod = pcall(require, "cjson")
    cjson = ok and mod or false
  end
  if not cjson then raise(fname .. ": lua-cjson is not installed") end
  return cjson
end

function Request:json()
  if getmetatable(self) ~= Request then argerr("json", "req", "request", self) end
  local j = get_cjson("json")
  local ok, v = pcall(j.decode, self.body)
  if not ok then return nil, "INVALID_ARGUMENT: body is not JSON: " .. tostring(v), "INVALID_ARGUMENT" end
  return v
end

--- The body parsed as application/x-www-form-urlencoded.
function Request:form()
  if getmetatable(self) ~= Request then argerr("form", "req", "request", self) end
  return parse_query(self.body)
end

--- True when the request asks for a WebSocket upgrade.
function Request:is_websocket()
  if getmetatable(self) ~= Request then argerr("is_websocket", "req", "request", self) end
  local up = rawget(self.headers, "upgrade")
  return up ~= nil and str_lower(up) == "websocket"
end

local function new_response(m, c, req)
  return setmetatable({ conn = c, done = false, _m = m, _id = c._ro.id, _status = 200,
                        _hdrs = nil, _chunked = false, _req = req }, Response)
end

local function check_res(res, fname)
  if getmetatable(res) ~= Response then
    raise(str_format("%s: bad argument 'res' (response expected, got %s)", fname, typeof(res)))
  end
  local p = res._m._p
  if p == nil then raise(fname .. ": the manager is closed") end
  if res.done then raise(fname .. ": the response was already sent") end
  return p
end

--- Sets the status code; returns the response for chaining.
function Response:status(code)
  check_res(self, "status")
  check_integer("status", "argument 'code'", code, 100, 599, "integer 100-599")
  if self._chunked then raise("status: the response has started") end
  self._status = code
  return self
end

local function set_header(res, fname, name, value, append)
  if type(name) ~= "string" then argerr(fname, "name", "string", name) end
  if value ~= nil and type(value) ~= "string" and type(value) ~= "number" then
    argerr(fname, "value", "string", value)
  end
  if res._chunked then raise(fname .. ": the response has started") end
  -- The library checks each header line, but a CR LF inside a value would make two
  -- valid lines: refuse it here (header injection).
  if value == nil then
    check_header(fname, name, "", "")
  else
    value = check_header(fname, name, value, "")
  end
  local h = res._hdrs
  if not h then h = {}; res._hdrs = h end
  local lname = str_lower(name)
  if not append then
    for i = #h, 1, -1 do
      if str_lower(h[i][1]) == lname then table.remove(h, i) end
    end
  end
  if value ~= nil then h[#h + 1] = { name, value } end
end

--- Sets a header (replacing one of the same name); a table sets several; value nil removes.
function Response:set(name, value)
  check_res(self, "set")
  if type(name) == "table" then
    for k, v in pairs(name) do set_header(self, "set", k, v, false) end
  else
    set_header(self, "set", name, value, false)
  end
  return self
end

--- Adds a header line, keeping others of the same name (Set-Cookie).
function Response:append(name, value)
  check_res(self, "append")
  if value == nil then argerr("append", "value", "string", value) end
  set_header(self, "append", name, value, true)
  return self
end

--- The value of a response header set so far, or nil.
function Response:get(name)
  if getmetatable(self) ~= Response then argerr("get", "res", "response", self) end
  if type(name) ~= "string" then argerr("get", "name", "string", name) end
  local h = self._hdrs
  if h then
    local lname = str_lower(name)
    for i = 1, #h do
      if str_lower(h[i][1]) == lname then return h[i][2] end
    end
  end
  return nil
end

--- Sets Content-Type.
function Response:type(ctype)
  check_res(self, "type")
  if type(ctype) ~= "string" then argerr("type", "ctype", "string", ctype) end
  set_header(self, "type", "Content-Type", ctype, false)
  return self
end

-- "Content-Type: <type>\r\n" for each default type, made once: the reply of every
-- request without headers of its own would build it again.
local ctype_lines = setmetatable({}, { __index = function(t, ctype)
  local line = "Content-Type: " .. ctype .. "\r\n"
  t[ctype] = line
  return line
end })

local function header_block(res, default_ctype)
  local h = res._hdrs
  if not h then
    if default_ctype then return ctype_lines[default_ctype] end
    return nil
  end
  local out = {}
  local has_ctype = false
  for i = 1, #h do
    local name = h[i][1]
    if not has_ctype and str_lower(name) == "content-type" then has_ctype = true end
    out[#out + 1] = name .. ": " .. h[i][2] .. "\r\n"
  end
  if default_ctype and not has_ctype then out[#out + 1] = "Content-Type: " .. default_ctype .. "\r\n" end
  return tconcat(out)
end

local function do_reply(res, p, body, ctype, fname)
  if res._chunked then raise(fname .. ": the response has started (use write/finish)") end
  local hdr = header_block(res, ctype)
  local r = C.wss_http_reply(p, res._id, res._status, hdr, body, #body)
  if r == R_OK then
    res.done = true
    return res
  end
  if r == R_INVALID_STATE or r == R_CLOSED or r == R_NOT_FOUND then res.done = true end
  return fail_conn(res._m, r, res.conn)
end

--- Sends a whole reply with body `body` (string; a table is sent as JSON).
function Response:send(body)
  local p = check_res(self, "send")
  if body == nil then body = "" end
  if type(body) == "table" then return self:json(body) end
  if type(body) ~= "string" then argerr("send", "body", "string", body) end
  return do_reply(self, p, body, "text/plain; charset=utf-8", "send")
end

--- Sends `body` as text/plain (unless a Content-Type was set).
function Response:text(body)
  local p = check_res(self, "text")
  if type(body) ~= "string" then argerr("text", "body", "string", body) end
  return do_reply(self, p, body, "text/plain; charset=utf-8", "text")
end

--- Sends `body` as text/html.
function Response:html(body)
  local p = check_res(self, "html")
  if type(body) ~= "string" then argerr("html", "body", "string", body) end
  return do_reply(self, p, body, "text/html; charset=utf-8", "html")
end

--- Sends `value` encoded as JSON (lua-cjson), application/json.
function Response:json(value)
  local p = check_res(self, "json")
  local j = get_cjson("json")
  local ok, body = pcall(j.encode, value)
  if not ok then raise("json: cannot encode the value: " .. str_sub(tostring(body), 1, 200)) end
  return do_reply(self, p, body, "application/json", "json")
end

--- Redirects to `location` (status 302 unless given).
function Response:redirect(location, status)
  check_res(self, "redirect")
  if type(location) ~= "string" then argerr("redirect", "location", "string", location) end
  if status ~= nil then
    check_integer("redirect", "argument 'status'", status, 100, 599, "integer 100-599")
    self._status = status
  else
    self._status = 302
  end
  set_header(self, "redirect", "Location", location, false)
  return do_reply(self, self._m._p, "", nil, "redirect")
end

local function serve_opts(fname, opts, root)
  local o = ffi_new("wss_serve_opts")
  o.struct_size = ffi_sizeof("wss_serve_opts")
  local anchor = { root }
  if root then o.root_dir = root end
  if opts ~= nil then
    if type(opts) ~= "table" then argerr(fname, "opts", "table", opts) end
    for k, v in pairs(opts) do
      if k == "index" then
        if type(v) ~= "string" then raise(fname .. ": bad option 'index' (string expected)") end
        o.index_file = v; anchor[#anchor + 1] = v
      elseif k == "headers" then
        v = header_lines(fname, "headers", v)
        o.extra_headers = v; anchor[#anchor + 1] = v
      elseif k == "mime_types" then
        -- The content types go out in Content-Type headers.
        local where = " in option 'mime_types'"
        if type(v) == "table" then
          local parts = {}
          for ext, ct in pairs(v) do
            if type(ext) ~= "string" or not str_find(ext, "^[^%c%s,=]+$") then
              raise(str_format("%s: bad option 'mime_types' (bad extension %s)", fname, show(ext)))
            end
            if type(ct) ~= "string" then
              raise(str_format("%s: bad option 'mime_types' (string expected for %s, got %s)", fname, show(ext),
                               typeof(ct)))
            end
            check_header(fname, "Content-Type", ct, where)
            if str_find(ct, ",", 1, true) then
              raise(str_format("%s: bad option 'mime_types' (a content type with a comma: %s)", fname, show(ct)))
            end
            parts[#parts + 1] = ext .. "=" .. ct
          end
          v = tconcat(parts, ",")
        elseif type(v) == "string" then
          check_header(fname, "Content-Type", v, where)
        else
          raise(fname .. ": bad option 'mime_types' (string or table expected)")
        end
        o.mime_types = v; anchor[#anchor + 1] = v
      elseif k == "prefix" then
        if type(v) ~= "string" then raise(fname .. ": bad option 'prefix' (string expected)") end
        if v ~= "" and v ~= "/" then o.url_prefix = v; anchor[#anchor + 1] = v end
      else
        raise(str_format("%s: unknown option %s", fname, show_key(k)))
      end
    end
  end
  return o, anchor
end

--- Answers with the file at `path` (conditional requests, ranges and HEAD included).
function Response:file(path, opts)
  local p = check_res(self, "file")
  if type(path) ~= "string" then argerr("file", "path", "string", path) end
  if self._chunked then raise("file: the response has started") end
  local o, anchor = serve_opts("file", opts, nil)
  self._anchor = anchor
  local r = C.wss_http_serve_file(p, self._id, path, o)
  self._anchor = nil
  if r == R_OK then self.done = true; return self end
  if r == R_INVALID_STATE or r == R_CLOSED or r == R_NOT_FOUND then self.done = true end
  return fail_conn(self._m, r, self.conn)
end

--- Answers with a file from directory `root`, chosen by the request path.
function Response:dir(root, opts)
  local p = check_res(self, "dir")
  if type(root) ~= "string" then argerr("dir", "root", "string", root) end
  if self._chunked then raise("dir: the response has started") end
  local o, anchor = serve_opts("dir", opts, root)
  self._anchor = anchor
  local r = C.wss_http_serve_dir(p, self._id, o)
  self._anchor = nil
  if r == R_OK then self.done = true; return self end
  if r == R_INVALID_STATE or r == R_CLOSED or r == R_NOT_FOUND then self.done = true end
  return fail_conn(self._m, r, self.conn)
end

--- Streams a body of unknown length: the first write sends the head.
function Response:write(data)
  local p = check_res(self, "write")
  if type(data) ~= "string" then argerr("write", "data", "string", data) end
  if not self._chunked then
    local r = C.wss_http_chunked_begin(p, self._id, self._status, header_block(self, "text/plain; charset=utf-8"))
    if r ~= R_OK then
      if r == R_INVALID_STATE or r == R_CLOSED or r == R_NOT_FOUND then self.done = true end
      return fail_conn(self._m, r, self.conn)
    end
    self._chunked = true
  end
  if #data == 0 then return self end
  local r = C.wss_http_chunk(p, self._id, data, #data)
  if r ~= R_OK then
    if r == R_CLOSED or r == R_NOT_FOUND then self.done = true end
    return fail_conn(self._m, r, self.conn)
  end
  return self
end

--- Ends a streamed body (after an optional last piece); without write() before, sends
--- `data` as a whole reply.
function Response:finish(data)
  local p = check_res(self, "finish")
  if data ~= nil and type(data) ~= "string" then argerr("finish", "data", "string", data) end
  if not self._chunked then return do_reply(self, p, data or "", "text/plain; charset=utf-8", "finish") end
  if data and #data > 0 then
    local ok, err, name = self:write(data)
    if not ok then return nil, err, name end
  end
  local r = C.wss_http_chunk(p, self._id, nil, 0)
  self.done = true
  if r ~= R_OK then return fail_conn(self._m, r, self.conn) end
  return self
end

local function add_handlers(fname, c, t)
  local own
  for k, v in pairs(t) do
    if HANDLERS[k] then
      if type(v) ~= "function" then
        raise(str_format("%s: bad handler '%s' (function expected, got %s)", fname, k, typeof(v)))
      end
      if not own then
        if not c._own_h then
          c._h = setmetatable({}, { __index = c._h })
          c._own_h = true
        end
        own = c._h
      end
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
-- Event dispatch

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

local function data_of(ev) return ffi_string(ev.data.ptr, ev.data.len) end

-- One event to the handlers. Every field of `ev` is read before a handler runs: a
-- handler may poll the manager again, which overwrites the batch array.
local function dispatch(m, ev)
  local kind = ev.kind
  if kind == EV_WS_MSG then -- the hot path first
    local c = m._conns[tonumber(ev.conn)]
    if c then
      local f = c._h.ws_message
      if f then f(c, ffi_string(ev.data.ptr, ev.data.len), band(ev.flags, FLAG_BINARY) ~= 0 and "binary" or "text") end
    end
    return
  end
  if kind == EV_TIMER then
    local id = tonumber(ev.conn)
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
    if f then f(tonumber(ev.conn), data_of(ev)) end
    return
  end
  local id = tonumber(ev.conn)
  if kind == EV_CLOSE then
    local c = m._conns[id]
    if not c then return end
    m._conns[id] = nil
    local ro = c._ro
    ro.closed = true
    local code = ev.code
    local reason = data_of(ev)
    local by_peer = band(ev.flags, FLAG_BY_PEER) ~= 0
    if code == 0 then code = nil end
    local h = c._h
    if ro.kind == "ws" and c._open then
      local f = h.ws_close
      if f then f(c, code, reason, by_peer) end
    end
    local f = h.close
    if f then f(c, code, reason, by_peer) end
    return
  end
  local c = get_conn(m, id, tonumber(ev.parent), kind)
  local h = c._h
  if kind == EV_HTTP_MSG then
    local req = new_request(m, c, id)
    local res = new_response(m, c, req)
    local f = h.http
    if f then
      f(req, res)
    else
      res:status(404):text("Not Found\n")
    end
  elseif kind == EV_READ then
    local f = h.read
    if f then
      local meta = ev.meta.len > 0 and ffi_string(ev.meta.ptr, ev.meta.len) or nil
      f(c, data_of(ev), meta)
    end
  elseif kind == EV_WS_OPEN then
    local ro = c._ro
    ro.kind = "ws"
    c._open = true
    local proto = ev.data.len > 0 and data_of(ev) or nil
    local target = ev.meta.len > 0 and ffi_string(ev.meta.ptr, ev.meta.len) or nil
    ro.protocol, ro.target = proto, target
    local f = h.ws_open
    if f then f(c, target, proto) end
  elseif kind == EV_WS_FRAGMENT then
    local f = h.ws_fragment
    if f then
      local flags = ev.flags
      f(c, data_of(ev), band(flags, FLAG_BINARY) ~= 0 and "binary" or "text",
        band(flags, FLAG_FIRST) ~= 0, band(flags, FLAG_FIN) ~= 0)
    end
  elseif kind == EV_WS_CTL then
    local f = h.ws_ctl
    if f then f(c, ev.flags == OP_PING and "ping" or "pong", data_of(ev)) end
  elseif kind == EV_ACCEPT then
    local f = h.accept
    if f then f(c) end
  elseif kind == EV_CONNECT then
    local f = h.connect
    if f then f(c) end
  elseif kind == EV_ERROR then
    local f = h.error
    if f then f(c, data_of(ev), ev.code) end
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

local function event_table(m, ev)
  local kind = ev.kind
  local id = tonumber(ev.conn)
  local t = { kind = kind, name = EV[kind] or tostring(kind), id = id, flags = ev.flags, code = ev.code,
              data = data_of(ev), meta = ffi_string(ev.meta.ptr, ev.meta.len) }
  local parent = tonumber(ev.parent)
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
    t.req = new_request(m, c, id)
    t.res = new_response(m, c, t.req)
  elseif kind == EV_WS_OPEN then
    local ro = c._ro
    ro.kind = "ws"
    c._open = true
    ro.protocol = t.data ~= "" and t.data or nil
    ro.target = t.meta ~= "" and t.meta or nil
  elseif kind == EV_WS_MSG or kind == EV_WS_FRAGMENT then
    t.binary = band(t.flags, FLAG_BINARY) ~= 0
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
  if fn ~= nil and type(fn) ~= "function" and not (name == "http" and getmetatable(fn) == Router) then
    argerr("on", "fn", "function", fn)
  end
  if not self._own_h then
    self._h = setmetatable({}, { __index = self._h })
    self._own_h = true
  end
  rawset(self._h, name, fn)
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
    local op = OP_TEXT
    if kind ~= nil then
      op = WS_KINDS[kind]
      if not op then argerr("send", "kind", "\"text\" or \"binary\"", kind) end
    end
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
    op = OP_TEXT
    if kind ~= nil then
      op = WS_KINDS[kind]
      if not op then argerr("send_fragment", "kind", "\"text\" or \"binary\"", kind) end
    end
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
  local op = OP_TEXT
  if kind ~= nil then
    op = WS_KINDS[kind]
    if not op then argerr("broadcast", "kind", "\"text\" or \"binary\"", kind) end
  end
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
  local op = OP_TEXT
  if kind ~= nil then
    op = WS_KINDS[kind]
    if not op then argerr("broadcast", "kind", "\"text\" or \"binary\"", kind) end
  end
  if not HAS_WS then raise("broadcast: this libwsserver has no WebSocket API") end
  local r = C.wss_ws_broadcast(p, 0, data, #data, op, size_out)
  if r ~= R_OK then return fail(self, r) end
  return tonumber(size_out[0])
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

local function address(self, fname, fn)
  local p, m = check_conn(self, fname)
  local r = fn(p, self._ro.id, addr_buf, 256, size_out)
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

---------------------------------------------------------------------------------------
-- libuv (luv) interop

--- Attaches the manager to a luv loop. `opts.mode`: "fd" (default: uv.new_poll on
--- mgr:fd(), no CPU while idle), "timer" (poll every `opts.interval` ms, default 10) or
--- "idle" (poll on every loop iteration, as luvit programs do with mongoose). Returns a
--- handle whose :detach() stops it.
function Manager:attach(uv, opts)
  local p = check_mgr(self, "attach")
  if uv == nil then uv = require("luv") end
  if type(uv) ~= "table" or type(uv.new_poll) ~= "function" then argerr("attach", "uv", "luv module", uv) end
  if opts ~= nil and type(opts) ~= "table" then argerr("attach", "opts", "table", opts) end
  if self._attached then raise("attach: the manager is already attached (detach it first)") end
  local mode = opts and opts.mode or "fd"
  local interval = 10
  if opts then
    for k in pairs(opts) do
      if k ~= "mode" and k ~= "interval" then raise(str_format("attach: unknown option %s", show_key(k))) end
    end
    if opts.interval ~= nil then
      interval = check_number("attach", "option 'interval'", opts.interval, "number >= 1")
      if interval < 1 or interval >= MAX_INT then
        raise(str_format("attach: bad option 'interval' (number >= 1 expected, got %s)", show(interval)))
      end
      interval = floor(interval)
    end
  end
  local a = setmetatable({ mgr = self, mode = mode, _uv = uv }, Attachment)
  local mgr = self
  if mode == "fd" then
    local h, err = uv.new_poll(C.wss_mgr_fd(p))
    if not h then return nil, err end
    a._handle = h
    -- The fd is edge-style: poll(0) and drain everything. A poll takes a bounded
    -- amount of I/O; when work is left (next_timeout 0), go round again, a few times.
    h:start("r", function()
      for _ = 1, 8 do
        if mgr._p == nil then return end
        mgr:poll(0)
        local q = mgr._p and tonumber(C.wss_mgr_next_timeout_ms(mgr._p))
        if q ~= 0 then return end
      end
    end)
  elseif mode == "timer" then
    local h = uv.new_timer()
    a._handle = h
    h:start(0, interval, function() if mgr._p then mgr:poll(0) end end)
  elseif mode == "idle" then
    local h = uv.new_idle()
    a._handle = h
    h:start(function() if mgr._p then mgr:poll(0) end end)
  else
    raise("attach: bad option 'mode' (\"fd\", \"timer\" or \"idle\" expected)")
  end
  self._attached = a
  return a
end

-- Stops and closes the luv handle of attachment `a`.
function release_attachment(a)
  local h = a._handle
  if a.mgr._attached == a then a.mgr._attached = nil end
  if not h then return end
  a._handle = nil
  if not h:is_closing() then
    h:stop()
    h:close()
  end
end

-- Lets the close of a luv handle complete. A close completes in the loop; a handle
-- whose close has not completed when the program ends crashes luv 1.44 (Debian's
-- lua-luv) at exit: the loop's finalizer runs the close callback of a handle already
-- collected (`uv.new_timer():close()` at the end of a script does it too). Inside the
-- loop (a luv callback), the close completes at the end of the current iteration; outside,
-- run the loop once without waiting, which completes it now. uv.loop_mode() tells
-- which (nil: the loop is not running); a luv without it is left alone.
function complete_close(uv)
  local mode = uv.loop_mode
  if type(mode) == "function" and mode() == nil then uv.run("nowait") end
end

--- Stops driving the manager from luv (closes the luv handle). Harmless twice.
function Attachment:detach()
  if getmetatable(self) ~= Attachment then argerr("detach", "handle", "attachment", self) end
  local had = self._handle ~= nil
  release_attachment(self)
  if had then complete_close(self._uv) end
  return true
end

--- Detaches (as detach); returns true.
function Attachment:close()
  if getmetatable(self) ~= Attachment then argerr("close", "attachment", "attachment", self) end
  return self:detach()
end

--- Detaches the manager from luv, if attached.
function Manager:detach()
  if getmetatable(self) ~= Manager then argerr("detach", "mgr", "manager", self) end
  local a = self._attached
  if a then a:detach() end
  return true
end

---------------------------------------------------------------------------------------
-- Router (Express-like)

local function escape_pattern(s) return (str_gsub(s, "[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")) end

-- Compiles "/users/:id/*" into a Lua pattern and the names of its captures.
-- `level`: error level of a bad path, as seen from compile().
local function compile(fname, path, prefix, level)
  if type(path) ~= "string" or str_sub(path, 1, 1) ~= "/" then
    raise(str_format("%s: bad argument 'path' (string starting with \"/\" expected, got %s)", fname, show(path)),
          level)
  end
  if prefix and (path == "/" or path == "") then return { all = true, keys = {} } end
  local keys, parts = {}, {}
  for seg in str_gmatch(path, "/([^/]*)") do
    if str_sub(seg, 1, 1) == ":" and #seg > 1 then
      keys[#keys + 1] = str_sub(seg, 2)
      parts[#parts + 1] = "/([^/]+)"
    elseif seg == "*" then
      keys[#keys + 1] = "*"
      parts[#parts + 1] = "/(.*)"
    else
      parts[#parts + 1] = "/" .. escape_pattern(seg)
    end
  end
  local pat = "^" .. tconcat(parts)
  if str_sub(pat, -1) == "/" then pat = str_sub(pat, 1, -2) end -- "/users/" matches "/users"
  if prefix then return { pattern = pat .. "(.*)$", keys = keys, prefix = true } end
  local layer = { pattern = pat .. "/?$", keys = keys }
  if #keys == 0 then
    -- No parameters: the pattern matches exactly the path, with or without one trailing
    -- "/". Compare strings instead (no pattern matching, no capture table per request).
    local lit = str_sub(path, -1) == "/" and str_sub(path, 1, -2) or path
    layer.literal, layer.literal_slash = lit, lit .. "/"
  end
  return layer
end

-- Matches a compiled path; returns params (or true) and, for prefixes, the rest.
local function match(layer, path)
  if layer.all then return true, path, "" end
  local lit = layer.literal
  if lit then
    if path == lit or path == layer.literal_slash then return true end
    return nil
  end
  local caps = { str_match(path, layer.pattern) }
  if caps[1] == nil then return nil end
  local rest
  if layer.prefix then
    rest = caps[#caps]
    caps[#caps] = nil
    if rest ~= "" and str_sub(rest, 1, 1) ~= "/" then return nil end
  end
  local keys = layer.keys
  local params
  if #keys > 0 then
    params = {}
    for i = 1, #keys do params[keys[i]] = url_decode(caps[i]) end
  end
  return params or true, rest, rest and str_sub(path, 1, #path - #rest)
end

--- A new router. It is a handler: pass it as `http` to listen(), or call it.
function lm.router()
  return setmetatable({ _stack = {}, _not_found = nil, _on_error = nil }, Router)
end

local function check_router(r, fname)
  if getmetatable(r) ~= Router then
    raise(str_format("%s: bad argument 'app' (router expected, got %s)", fname, typeof(r)))
  end
end

-- Whether a handler can receive next(): a router, a vararg or C function, or a Lua
-- function declared with a third parameter.
local function takes_next(fn)
  if type(fn) ~= "function" then return true end
  local info = debug.getinfo(fn, "u")
  return info.isvararg or info.nparams >= 3
end

local function add_route(self, fname, method, path, ...)
  check_router(self, fname)
  local layer = compile(fname, path, false, 4)
  local n = select("#", ...)
  if n == 0 then raise(fname .. ": no handler given") end
  for i = 1, n do
    local fn = select(i, ...)
    if type(fn) ~= "function" and getmetatable(fn) ~= Router then
      raise(str_format("%s: bad handler #%d (function expected, got %s)", fname, i, typeof(fn)))
    end
    self._stack[#self._stack + 1] = { method = method, pattern = layer.pattern, keys = layer.keys, fn = fn,
                                      literal = layer.literal, literal_slash = layer.literal_slash,
                                      next = takes_next(fn) }
  end
  return self
end

--- Routes for one method: fn(req, res, next); several handlers run in turn via next().
function Router:get(path, ...) local r = add_route(self, "get", "GET", path, ...); return r end
function Router:post(path, ...) local r = add_route(self, "post", "POST", path, ...); return r end
function Router:put(path, ...) local r = add_route(self, "put", "PUT", path, ...); return r end
function Router:delete(path, ...) local r = add_route(self, "delete", "DELETE", path, ...); return r end
function Router:patch(path, ...) local r = add_route(self, "patch", "PATCH", path, ...); return r end
function Router:all(path, ...) local r = add_route(self, "all", nil, path, ...); return r end

--- Middleware fn(req, res, next) for every request under `path` (default "/"); a router
--- given here is mounted under `path`.
function Router:use(path, fn)
  check_router(self, "use")
  if fn == nil then path, fn = "/", path end
  if type(fn) ~= "function" and getmetatable(fn) ~= Router then argerr("use", "fn", "function or router", fn) end
  local layer = compile("use", path, true, 3)
  layer.fn = fn
  layer.next = takes_next(fn)
  layer.use = true
  self._stack[#self._stack + 1] = layer
  return self
end

--- WebSocket endpoint: a GET with "Upgrade: websocket" on `path` is upgraded, with
--- `handlers` (ws_open, ws_message, ws_close, ... and protocol/headers) for the connection.
function Router:ws(path, handlers)
  check_router(self, "ws")
  if type(handlers) ~= "table" then argerr("ws", "handlers", "table", handlers) end
  for k, v in pairs(handlers) do
    if HANDLERS[k] then
      if type(v) ~= "function" then
        raise(str_format("ws: bad handler '%s' (function expected, got %s)", k, typeof(v)))
      end
    elseif k == "protocol" then
      if type(v) ~= "string" then raise("ws: bad option 'protocol' (string expected)") end
      check_header("ws", "Sec-WebSocket-Protocol", v, " in option 'protocol'")
    elseif k == "headers" then
      header_lines("ws", "headers", v) -- checked now, not at each upgrade
    else
      raise(str_format("ws: unknown handler or option %s", show_key(k)))
    end
  end
  local layer = compile("ws", path, false, 3)
  layer.method = "GET"
  layer.fn = function(req, res, nxt)
    if not req:is_websocket() then return nxt() end
    local ok, err = res:upgrade(handlers)
    if not ok and not res.done then res:status(400):text("WebSocket upgrade failed: " .. tostring(err) .. "\n") end
  end
  layer.next = true
  self._stack[#self._stack + 1] = layer
  return self
end

--- Static files from `root` under URL prefix `prefix`: a middleware that serves files
--- that exist and passes on (next()) for those that do not.
function lm.static(root, opts)
  if type(root) ~= "string" then argerr("static", "root", "string", root) end
  if opts ~= nil then serve_opts("static", opts, root) end -- validate now, not per request
  if str_sub(root, -1) == "/" and #root > 1 then root = str_sub(root, 1, -2) end
  return function(req, res, nxt)
    local method = req.method
    if method ~= "GET" and method ~= "HEAD" then return nxt() end
    local rel = url_decode(req.path)
    -- Anything unusual is left to the library, which answers 403 for escapes.
    local unusual = str_find(rel, "%.%.", 1) or str_find(rel, "\\", 1, true) or str_find(rel, "%z")
    -- Whether the path exists is asked without opening it: an open of a FIFO would
    -- block the polling thread. The library opens it non-blocking and answers 404 for
    -- what is not a regular file (a FIFO, a device).
    if not unusual and C_access(root .. rel, R_OK_ACCESS) ~= 0 then return nxt() end
    local o = {}
    if opts then for k, v in pairs(opts) do o[k] = v end end
    o.prefix = req.base_path ~= "" and req.base_path or nil
    local ok, err = res:dir(root, o)
    if not ok and not res.done then nxt(err) end
  end
end

--- Serves directory `root` under `prefix` (app:use(prefix, lm.static(root, opts))).
function Router:static(prefix, root, opts)
  check_router(self, "static")
  return self:use(prefix, lm.static(root, opts))
end

--- Sets the handler fn(req, res) for requests no route answered (default: 404 text).
function Router:not_found(fn)
  check_router(self, "not_found")
  if type(fn) ~= "function" then argerr("not_found", "fn", "function", fn) end
  self._not_found = fn
  return self
end

--- Sets the handler fn(err, req, res) for errors raised by handlers or passed to next(err)
--- (default: 500 text, and the error on stderr).
function Router:on_error(fn)
  check_router(self, "on_error")
  if type(fn) ~= "function" then argerr("on_error", "fn", "function", fn) end
  self._on_error = fn
  return self
end

local function default_not_found(req, res)
  if not res.done then res:status(404):text("Not Found\n") end
end

local function default_error(err, req, res)
  io.stderr:write("LibMongoose router: ", tostring(err), "\n")
  if not res.done then
    res:status(500):text("Internal Server Error\n")
  end
end

local function router_fail(self, err, req, res)
  local ok, e2 = xpcall(self._on_error or default_error, traceback, err, req, res)
  if not ok then
    io.stderr:write("LibMongoose router: error in the error handler: ", tostring(e2), "\n")
    if not res.done and res._m._p ~= nil and not res._chunked then
      pcall(function() res._status = 500; res._hdrs = nil; res:text("Internal Server Error\n") end)
    end
  end
end

local router_step

-- The `next` of the handler of layer `at`. A function of its own: a closure made inside
-- router_step would capture its locals, and closing them (bytecode UCLO) on the way out
-- is not compiled by LuaJIT, which would send every routed request to the interpreter.
local function make_next(self, req, res, out, orig_path, orig_base, at)
  return function(e) return router_step(self, req, res, out, orig_path, orig_base, at, e) end
end

-- Runs the layers after `i` (or the error path when `err` is given). A `next` closure is
-- made only for a handler that can take one (see `takes_next`): closure creation is not
-- compiled by LuaJIT, so a plain route stays on a compiled trace.
function router_step(self, req, res, out, orig_path, orig_base, i, err)
  req.path, req.base_path = orig_path, orig_base
  if err ~= nil then
    if out then return out(err) end
    return router_fail(self, err, req, res)
  end
  local stack, method = self._stack, req.method
  while true do
    i = i + 1
    local layer = stack[i]
    if not layer then
      if out then return out() end
      local ok, e = xpcall(self._not_found or default_not_found, traceback, req, res)
      if not ok then router_fail(self, e, req, res) end
      return
    end
    local lm_ = layer.method
    if lm_ == nil or lm_ == method or (lm_ == "GET" and method == "HEAD") then
      local params, rest, matched = match(layer, orig_path)
      if params then
        local fn = layer.fn
        if layer.use then
          req.path = rest ~= "" and rest or "/"
          req.base_path = orig_base .. matched
        elseif params ~= true then
          req.params = params
        else
          req.params = {}
        end
        local nxt
        if layer.next then nxt = make_next(self, req, res, out, orig_path, orig_base, i) end
        local ok, e
        if getmetatable(fn) == Router then
          ok, e = xpcall(fn.handle, traceback, fn, req, res, nxt)
        else
          ok, e = xpcall(fn, traceback, req, res, nxt)
        end
        if not ok then return router_fail(self, e, req, res) end
        return
      end
    end
  end
end

--- Runs a request through the router. `out(err)` (optional) is called when nothing
--- answered, instead of the 404 handler (used when a router is mounted in another).
function Router:handle(req, res, out)
  check_router(self, "handle")
  if getmetatable(req) ~= Request then argerr("handle", "req", "request", req) end
  if getmetatable(res) ~= Response then argerr("handle", "res", "response", res) end
  local orig_base = req.base_path or ""
  return router_step(self, req, res, out, req.path, orig_base, 0, nil)
end

Router.__call = function(self, req, res) return self:handle(req, res) end

---------------------------------------------------------------------------------------
-- Utilities on Lua strings

local function check_str(fname, what, s)
  if type(s) ~= "string" then
    raise(str_format("%s: bad argument '%s' (string expected, got %s)", fname, what, typeof(s)))
  end
end

--- Base64 (standard, padded; `url_safe`: the URL alphabet, no padding).
function lm.base64_encode(s, url_safe)
  check_str("base64_encode", "s", s)
  local n = #s
  local cap = floor((n + 2) / 3) * 4 + 1
  local buf = get_buf(cap)
  local r = C.wss_base64_encode(s, n, url_safe and true or false, ffi_cast("char *", buf), cap, size_out)
  if r ~= R_OK then return fail(nil, r) end
  return ffi_string(buf, size_out[0])
end

--- Decodes base64 (padding optional); nil, err for malformed input.
function lm.base64_decode(s, url_safe)
  check_str("base64_decode", "s", s)
  local n = #s
  local cap = floor(n * 3 / 4) + 3
  local buf = get_buf(cap)
  local r = C.wss_base64_decode(s, n, url_safe and true or false, buf, cap, size_out)
  if r ~= R_OK then return fail(nil, r) end
  return ffi_string(buf, size_out[0])
end

--- Lower-case hex of the bytes of `s`.
function lm.hex(s)
  check_str("hex", "s", s)
  local cap = #s * 2 + 1
  local buf = get_buf(cap)
  local r = C.wss_hex(s, #s, ffi_cast("char *", buf), cap, size_out)
  if r ~= R_OK then return fail(nil, r) end
  return ffi_string(buf, size_out[0])
end

--- CRC-32 (as zlib's crc32) of `s`, continuing from `crc` (default 0).
function lm.crc32(s, crc)
  check_str("crc32", "s", s)
  if crc == nil then crc = 0 end
  check_integer("crc32", "argument 'crc'", crc, 0, 0xFFFFFFFF, "32-bit unsigned integer")
  return tonumber(C.wss_crc32(crc, s, #s))
end

--- MD5 digest of `s`: 16 raw bytes.
function lm.md5(s)
  check_str("md5", "s", s)
  C.wss_md5(s, #s, digest_buf)
  return ffi_string(digest_buf, 16)
end

--- MD5 digest of `s` as 32 hex digits.
function lm.md5_hex(s)
  check_str("md5_hex", "s", s)
  C.wss_md5_hex(s, #s, hex41)
  return ffi_string(hex41, 32)
end

--- SHA-1 digest of `s`: 20 raw bytes.
function lm.sha1(s)
  check_str("sha1", "s", s)
  C.wss_sha1(s, #s, digest_buf)
  return ffi_string(digest_buf, 20)
end

--- SHA-1 digest of `s` as 40 hex digits.
function lm.sha1_hex(s)
  check_str("sha1_hex", "s", s)
  C.wss_sha1_hex(s, #s, hex41)
  return ffi_string(hex41, 40)
end

--- The library version, e.g. "0.1.0".
function lm.version()
  return ffi_string(C.wss_version())
end

---------------------------------------------------------------------------------------
-- Plain-function forms of the methods: lm.listen(mgr, url) is mgr:listen(url). A name
-- that several classes share (close, on) dispatches on the object's class; a tail call,
-- so errors still name the caller's line.

local METHOD_CLASSES = { Manager, Conn, Timer, Attachment }
local seen = {}
for _, cls in ipairs(METHOD_CLASSES) do
  for name, fn in pairs(cls) do
    if type(fn) == "function" and str_sub(name, 1, 1) ~= "_" then
      seen[name] = seen[name] or {}
      seen[name][#seen[name] + 1] = cls
    end
  end
end
for name, classes in pairs(seen) do
  if lm[name] == nil then
    if #classes == 1 then
      lm[name] = classes[1][name]
    else
      lm[name] = function(obj, ...)
        local mt = getmetatable(obj)
        for i = 1, #classes do
          if mt == classes[i] then return classes[i][name](obj, ...) end
        end
        raise(str_format("%s: bad argument #1 (manager, connection, timer or attachment expected, got %s)",
                         name, typeof(obj)))
      end
    end
  end
end

lm.Manager, lm.Connection, lm.Timer, lm.Request, lm.Response, lm.Router, lm.Attachment =
  Manager, Conn, Timer, Request, Response, Router, Attachment
lm.NO_TIMEOUT = NO_TIMEOUT
lm.HAS_WS = HAS_WS
lm.HANDLERS = {}
for name in pairs(HANDLERS) do lm.HANDLERS[#lm.HANDLERS + 1] = name end
table.sort(lm.HANDLERS)
lm.EVENTS = EV
lm.RESULTS = RESULTS
lm.C = C

return lm
