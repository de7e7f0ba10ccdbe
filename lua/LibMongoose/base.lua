--- LibMongoose.base: what every module of the package shares, and nothing else.
--
--   * the thin binding (`C`) and the ABI's numbers, all taken from mongoose.lua, which
--     reads them from the generated declarations: no module restates one by hand;
--   * the class tables (Manager, Conn, Timer, Request, Response, Router, Attachment),
--     empty here and filled by the module that owns each concept, so that any module can
--     recognise any object by its metatable without requiring the module above it;
--   * the two error conventions (lua-resty-core, luv): misuse raises a Lua error reported
--     at the program's line (`raise`, `argerr`); a runtime failure returns
--     `nil, "ENAME: message", "ENAME"` (`fail`).
--
-- Dependency order of the package (each module requires only modules before it):
--   base <- options <- util <- event <- core <- http <- ws <- router, luv <- LibMongoose
local ffi = require("ffi")
local mg = require("mongoose")

local ffi_string = ffi.string
local type, tostring, error, getmetatable, pcall = type, tostring, error, getmetatable, pcall
local str_byte, str_format, str_gsub, str_sub, str_find = string.byte, string.format, string.gsub, string.sub,
  string.find
local getinfo = debug.getinfo

local C = mg.bindings

local M = {}

M.C = C
M.EV = mg.events
M.RESULTS = mg.results
M.FLAG = mg.flags
M.OP = mg.opcodes
M.NO_TIMEOUT = mg.NO_TIMEOUT
M.R_OK = mg.results.OK

--- True when the loaded libwsserver has the WebSocket API (wss_ws_send...).
M.HAS_WS = pcall(function() return C.wss_ws_send end)

--- Integers above are not exact in a Lua number (ids stay below, by the C API's rule).
M.MAX_INT = 2 ^ 53


---------------------------------------------------------------------------------------
-- Classes. Method tables double as metatables; each is filled by the module named.

local Manager = {}   -- LibMongoose.core (attach/detach: LibMongoose.luv, broadcast: .ws)
Manager.__index = Manager
local Conn = {}      -- LibMongoose.core (send_fragment, ping, pong, broadcast: .ws)
local Timer = {}     -- LibMongoose.core
local Request = {}   -- LibMongoose.http
Request.__index = Request
local Response = {}  -- LibMongoose.http (upgrade: LibMongoose.ws)
Response.__index = Response
local Router = {}    -- LibMongoose.router
Router.__index = Router
local Attachment = {} -- LibMongoose.luv
Attachment.__index = Attachment

M.Manager, M.Conn, M.Timer, M.Request, M.Response, M.Router, M.Attachment =
  Manager, Conn, Timer, Request, Response, Router, Attachment

local CLASS_NAMES = {
  [Manager] = "manager", [Conn] = "connection", [Timer] = "timer", [Request] = "request",
  [Response] = "response", [Router] = "router", [Attachment] = "attachment",
}

---------------------------------------------------------------------------------------
-- Misuse

-- The source names of the package's files (debug.getinfo(...).source). A misuse error
-- is reported at the first caller outside them.
local INTERNAL = {}

--- Marks the calling file as part of LibMongoose: `base.internal()` at the top of each.
function M.internal()
  INTERNAL[getinfo(2, "S").source] = true
end
M.internal()

--- Raises a misuse error reported at the first caller outside the package, however deep
--- inside it the misuse was noticed (tail calls, helpers and the files of the package
--- change the depth, so a fixed error level would point at the wrong line).
local function raise(msg)
  local level = 2
  while true do
    local info = getinfo(level, "S")
    if not info then break end
    if not INTERNAL[info.source] and info.what ~= "C" and info.what ~= "tail" then break end
    level = level + 1
  end
  error(msg, level)
end
M.raise = raise

--- The class name of `v` ("manager", "listener", "connection"...) or its Lua type.
local function typeof(v)
  if type(v) == "table" then
    local mt = getmetatable(v)
    local name = mt and CLASS_NAMES[mt]
    if name == "connection" and v.kind == "listener" then return "listener" end
    if name then return name end
  end
  return type(v)
end
M.typeof = typeof

--- Misuse: a bad argument.
function M.argerr(fname, what, expected, got)
  raise(str_format("%s: bad argument '%s' (%s expected, got %s)", fname, what, expected, typeof(got)))
end

-- An offending value as error messages show it: a string quoted, with control
-- characters escaped, and cut after 64 bytes (a 1 MB bad value makes a short message);
-- a number as it prints; anything else by its type.
local SHOW_MAX = 64
M.SHOW_MAX = SHOW_MAX
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
M.show = show

--- An option or handler name as messages show it: 'name' when it is short and plain,
--- else as show() does.
function M.show_key(k)
  if type(k) == "string" and #k <= SHOW_MAX and not str_find(k, "[%c']") then return "'" .. k .. "'" end
  return show(k)
end

-- WebSocket message kinds as programs name them, to opcodes.
local WS_KINDS = { text = M.OP.TEXT, binary = M.OP.BINARY }
local OP_TEXT = M.OP.TEXT

--- The opcode of message kind `kind` ("text", the default, or "binary"), for `fname`.
function M.ws_opcode(fname, kind)
  if kind == nil then return OP_TEXT end
  local op = WS_KINDS[kind]
  if not op then M.argerr(fname, "kind", "\"text\" or \"binary\"", kind) end
  return op
end

---------------------------------------------------------------------------------------
-- Runtime failure

local RESULTS = M.RESULTS

--- nil, "ENAME: message", "ENAME" for result `r` of a call on manager `m` (or nil): the
--- manager's last error when it has one, else the result's static text.
function M.fail(m, r)
  local name = RESULTS[r] or tostring(r)
  local msg
  local p = m and m._p
  if p ~= nil then msg = ffi_string(C.wss_mgr_last_error(p)) end
  if msg == nil or msg == "" then msg = ffi_string(C.wss_result_str(r)) end
  return nil, name .. ": " .. msg, name
end

return M
