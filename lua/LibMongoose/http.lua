--- LibMongoose.http: HTTP requests and responses.
--
-- A request is a Lua table copied from the library's view at once (method, path,
-- headers, body...); a response gathers status and headers until one call sends it
-- (send, text, json, file, dir...) or starts a streamed body (write, finish). Installs
-- its maker of request and response objects in LibMongoose.core when it loads.
local ffi = require("ffi")
local base = require("LibMongoose.base")
local options = require("LibMongoose.options")
local util = require("LibMongoose.util")
local core = require("LibMongoose.core")
base.internal()

local ffi_new, ffi_string = ffi.new, ffi.string
local type, tostring, tonumber, pairs, pcall = type, tostring, tonumber, pairs, pcall
local setmetatable, getmetatable, rawget, rawset = setmetatable, getmetatable, rawget, rawset
local str_format, str_lower, str_sub = string.format, string.lower, string.sub
local tconcat, tremove = table.concat, table.remove

local C = base.C
local R = base.RESULTS
local R_OK, R_NOT_FOUND, R_CLOSED, R_INVALID_STATE = R.OK, R.NOT_FOUND, R.CLOSED, R.INVALID_STATE
local raise, argerr, typeof = base.raise, base.argerr, base.typeof
local check_integer, check_header = options.check_integer, options.check_header
local parse_query = util.parse_query
local fail_conn = core.fail_conn

local Request, Response = base.Request, base.Response

local M = {}

-- Out-parameters, allocated once (lua-resty-core style); read right after each call.
local str_out = ffi_new("wss_str[1]")
local str_out2 = ffi_new("wss_str[1]")
local req_out = ffi_new("wss_http_request[1]")

local function S(s) return ffi_string(s.ptr, s.len) end

---------------------------------------------------------------------------------------
-- Requests

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

-- lua-cjson, loaded on first use (it is optional); misuse when it is not installed.
local cjson
local function get_cjson(fname)
  if cjson == nil then
    local ok, mod = pcall(require, "cjson")
    cjson = ok and mod or false
  end
  if not cjson then raise(fname .. ": lua-cjson is not installed") end
  return cjson
end

--- The body decoded as JSON, or nil, err.
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

---------------------------------------------------------------------------------------
-- Responses

local function new_response(m, c, req)
  return setmetatable({ conn = c, done = false, _m = m, _id = c._ro.id, _status = 200,
                        _hdrs = nil, _chunked = false, _req = req }, Response)
end

--- The C manager of response `res`; misuse unless it is a response not yet sent, of an
--- open manager.
local function check_res(res, fname)
  if getmetatable(res) ~= Response then
    raise(str_format("%s: bad argument 'res' (response expected, got %s)", fname, typeof(res)))
  end
  local p = res._m._p
  if p == nil then raise(fname .. ": the manager is closed") end
  if res.done then raise(fname .. ": the response was already sent") end
  return p
end
M.check_res = check_res

-- A failed reply leaves the response `done` when the library will not take another
-- for it (answered, closed, or gone).
local function ends_response(r)
  return r == R_INVALID_STATE or r == R_CLOSED or r == R_NOT_FOUND
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
      if str_lower(h[i][1]) == lname then tremove(h, i) end
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

--- The header lines set on `res`, with "Content-Type: `default_ctype`" unless one was
--- set; nil when there is nothing to send.
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
M.header_block = header_block

local function do_reply(res, p, body, ctype, fname)
  if res._chunked then raise(fname .. ": the response has started (use write/finish)") end
  local hdr = header_block(res, ctype)
  local r = C.wss_http_reply(p, res._id, res._status, hdr, body, #body)
  if r == R_OK then
    res.done = true
    return res
  end
  if ends_response(r) then res.done = true end
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

--- Answers with the file at `path` (conditional requests, ranges and HEAD included).
function Response:file(path, opts)
  local p = check_res(self, "file")
  if type(path) ~= "string" then argerr("file", "path", "string", path) end
  if self._chunked then raise("file: the response has started") end
  local o, anchor = options.serve("file", opts, nil)
  self._anchor = anchor
  local r = C.wss_http_serve_file(p, self._id, path, o)
  self._anchor = nil
  if r == R_OK then self.done = true; return self end
  if ends_response(r) then self.done = true end
  return fail_conn(self._m, r, self.conn)
end

--- Answers with a file from directory `root`, chosen by the request path.
function Response:dir(root, opts)
  local p = check_res(self, "dir")
  if type(root) ~= "string" then argerr("dir", "root", "string", root) end
  if self._chunked then raise("dir: the response has started") end
  local o, anchor = options.serve("dir", opts, root)
  self._anchor = anchor
  local r = C.wss_http_serve_dir(p, self._id, o)
  self._anchor = nil
  if r == R_OK then self.done = true; return self end
  if ends_response(r) then self.done = true end
  return fail_conn(self._m, r, self.conn)
end

--- Streams a body of unknown length: the first write sends the head.
function Response:write(data)
  local p = check_res(self, "write")
  if type(data) ~= "string" then argerr("write", "data", "string", data) end
  if not self._chunked then
    local r = C.wss_http_chunked_begin(p, self._id, self._status, header_block(self, "text/plain; charset=utf-8"))
    if r ~= R_OK then
      if ends_response(r) then self.done = true end
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

core.set_exchange(function(m, c, id)
  local req = new_request(m, c, id)
  return req, new_response(m, c, req)
end)

return M
