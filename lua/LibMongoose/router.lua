--- LibMongoose.router: an Express-like router (lm.router()) and static files as
--- middleware (lm.static).
--
-- Tuned so that every routed request stays on a compiled trace (see router_step and
-- make_next): keep closures out of the per-request path.
local base = require("LibMongoose.base")
local options = require("LibMongoose.options")
local util = require("LibMongoose.util")
require("LibMongoose.ws") -- res:upgrade, for app:ws
base.internal()

local type, tostring, select, pairs, pcall, xpcall = type, tostring, select, pairs, pcall, xpcall
local setmetatable, getmetatable = setmetatable, getmetatable
local str_format, str_gsub, str_sub, str_find, str_match, str_gmatch = string.format, string.gsub, string.sub,
  string.find, string.match, string.gmatch
local tconcat, traceback, getinfo = table.concat, debug.traceback, debug.getinfo
local io = io -- io.stderr is looked up at each use: a program may replace it
local ffi = require("ffi")

-- access(2), for lm.static: whether a path names something readable, without opening
-- it (an open(2) of a FIFO blocks until a writer comes). Another module may have
-- declared it already.
pcall(ffi.cdef, "int access(const char *path, int mode);")
local C_access, R_OK_ACCESS = ffi.C.access, 4

local raise, argerr, typeof, show, show_key = base.raise, base.argerr, base.typeof, base.show, base.show_key
local check_header, header_lines, HANDLERS = options.check_header, options.header_lines, options.HANDLERS
local url_decode = util.url_decode

local Router, Request, Response = base.Router, base.Request, base.Response

local M = {}

---------------------------------------------------------------------------------------
-- Paths

local function escape_pattern(s) return (str_gsub(s, "[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")) end

-- Compiles "/users/:id/*" into a Lua pattern and the names of its captures.
local function compile(fname, path, prefix)
  if type(path) ~= "string" or str_sub(path, 1, 1) ~= "/" then
    raise(str_format("%s: bad argument 'path' (string starting with \"/\" expected, got %s)", fname, show(path)))
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

---------------------------------------------------------------------------------------
-- Building a router

--- A new router. It is a handler: pass it as `http` to listen(), or call it.
function M.router()
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
  local info = getinfo(fn, "u")
  return info.isvararg or info.nparams >= 3
end

local function add_route(self, fname, method, path, ...)
  check_router(self, fname)
  local layer = compile(fname, path, false)
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
  local layer = compile("use", path, true)
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
  local layer = compile("ws", path, false)
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
function M.static(root, opts)
  if type(root) ~= "string" then argerr("static", "root", "string", root) end
  if opts ~= nil then options.serve("static", opts, root) end -- validate now, not per request
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
local static = M.static

--- Serves directory `root` under `prefix` (app:use(prefix, lm.static(root, opts))).
function Router:static(prefix, root, opts)
  check_router(self, "static")
  return self:use(prefix, static(root, opts))
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

---------------------------------------------------------------------------------------
-- Running a request through the router

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

return M
