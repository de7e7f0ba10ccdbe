--- LibMongoose.options: checking what programs pass in, and Lua option tables to C
--- structs.
--
-- The one check of every number LibMongoose takes (`check_number`, `check_integer`) and
-- of every header it writes (`check_header`), whatever the path; the handler names; the
-- option tables of listen, connect, new, serving files, with their TLS sub-tables.
-- Unknown keys are misuse (they are typos).
local ffi = require("ffi")
local base = require("LibMongoose.base")
base.internal()

local ffi_new, ffi_sizeof = ffi.new, ffi.sizeof
local type, tostring, pairs, pcall, getmetatable = type, tostring, pairs, pcall, getmetatable
local str_byte, str_format, str_sub, str_find, str_match = string.byte, string.format, string.sub, string.find,
  string.match
local tconcat, floor, huge = table.concat, math.floor, math.huge

local raise, argerr, typeof, show, show_key = base.raise, base.argerr, base.typeof, base.show, base.show_key
local Router = base.Router
local NO_TIMEOUT, MAX_INT = base.NO_TIMEOUT, base.MAX_INT

local M = {}

---------------------------------------------------------------------------------------
-- Numbers and headers

--- The check of every number LibMongoose takes (timeouts, intervals, ids, sizes, codes,
--- header values): misuse unless `v` is a finite number. NaN and the infinities pass or
--- fail comparisons in surprising ways (NaN < 1 and NaN >= 1 are both false), so they
--- are refused before any range check. `what` names the value: "argument 'ms'",
--- "option 'interval'", "value for header \"X\"".
local function check_number(fname, what, v, expected)
  if type(v) ~= "number" then
    raise(str_format("%s: bad %s (%s expected, got %s)", fname, what, expected or "number", typeof(v)))
  end
  if v ~= v or v == huge or v == -huge then
    raise(str_format("%s: bad %s (finite number expected, got %s)", fname, what, tostring(v)))
  end
  return v
end
M.check_number = check_number

--- check_number, then an integer from lo to hi.
local function check_integer(fname, what, v, lo, hi, expected)
  check_number(fname, what, v, expected)
  if v ~= floor(v) or v < lo or v > hi then
    raise(str_format("%s: bad %s (%s expected, got %s)", fname, what, expected, show(v)))
  end
  return v
end
M.check_integer = check_integer

--- The check of every header LibMongoose writes, whatever the path: res:set and its
--- kin, header tables and blocks in options (res:file, res:dir, lm.static, res:upgrade,
--- app:ws, connect's ws_headers), content types, subprotocols, origins. The name must be
--- a token; the value (a string, or a finite number) may hold no control character but
--- tab: a CR, LF or NUL would end the line and start another (header injection), or cut
--- the C string short. Returns the value as a string. `where`: "" or " in option 'x'".
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
M.check_header = check_header

--- "Name: value\r\n" lines from a { name = value } table, or a string of such lines
--- (passed on as it is; LF alone ends a line too). Every header goes through
--- check_header; in a string, a line that is not "Name: value" (a blank line would end
--- the head) is misuse as well.
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
M.header_lines = header_lines

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

---------------------------------------------------------------------------------------
-- Handlers

--- The handler names (a set).
local HANDLERS = {
  listen = true, accept = true, connect = true, read = true, http = true, ws_open = true,
  ws_message = true, ws_close = true, ws_fragment = true, ws_ctl = true, drain = true,
  timer = true, wakeup = true, error = true, close = true, tls_ready = true,
}
M.HANDLERS = HANDLERS

--- Whether `v` can be handler `name`: a function, or a router for `http`.
local function is_handler(name, v)
  return type(v) == "function" or (name == "http" and getmetatable(v) == Router)
end
M.is_handler = is_handler

---------------------------------------------------------------------------------------
-- Option structs

-- kind: "u32", "u64", "ms" (timeout: number, false or lm.NO_TIMEOUT), "bool", "str", "list",
-- "protocols" (a list that goes out as Sec-WebSocket-Protocol), "origin" (the Origin
-- header), "headers" (header lines)
M.LISTEN_FIELDS = {
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

M.CONNECT_FIELDS = {
  idle_timeout_ms = "ms", max_send_buffer = "u64", max_frame_bytes = "u64",
  max_message_bytes = "u64", tls_insecure_skip_verify = "bool", ws_deflate = "bool",
  ws_stream = "bool", tls_ca = "str", tls_cert = "str", tls_key = "str",
  tls_server_name = "str", ws_protocols = "protocols", ws_origin = "origin", ws_headers = "headers",
}

M.MGR_FIELDS = { max_connections = "u32", max_threadsafe_bytes = "u64" }

--- Sets field `name` of C struct `o` from option value `v`; strings made here are kept
--- alive in `anchor`. `label`: the option's name in messages, when it is not `name`
--- ("tls.handshake_timeout_ms").
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

--- Splits an options table into the C struct of type `ctype` (or nil when there is
--- nothing to set), the handler table (or nil) and the anchor list that keeps generated
--- strings alive. `fields`: name -> kind; `tls_map(fname, o, t, anchor)` reads the `tls`
--- sub-table (without one, `tls` is an unknown option).
function M.build(fname, opts, ctype, fields, tls_map)
  if opts == nil then return nil, nil, nil end
  if type(opts) ~= "table" then argerr(fname, "opts", "table", opts) end
  local o, handlers
  local anchor = {}
  for k, v in pairs(opts) do
    if HANDLERS[k] then
      if not is_handler(k, v) then
        raise(str_format("%s: bad handler '%s' (function expected, got %s)", fname, k, typeof(v)))
      end
      handlers = handlers or {}
      handlers[k] = v
    elseif k == "tls" and tls_map then
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
  local tls = tls_map and opts.tls
  if tls then
    o = o or ffi_new(ctype)
    tls_map(fname, o, tls, anchor)
  end
  if o then o.struct_size = ffi_sizeof(ctype) end
  return o, handlers, anchor
end

--- The `tls` table of listen options.
function M.listen_tls(fname, o, t, anchor)
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

--- The `tls` table of connect options.
function M.connect_tls(fname, o, t, anchor)
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

--- The options of res:file, res:dir and lm.static as a wss_serve_opts (with `root`
--- as its root_dir when given), and the anchor list that keeps its strings alive.
function M.serve(fname, opts, root)
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

return M
