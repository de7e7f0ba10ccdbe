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
--
-- This file puts the package together; each concept lives in a module of its own under
-- lua/LibMongoose/, listed here in dependency order (each requires only those above it):
--
--   LibMongoose.base     the thin binding, ABI numbers (from mongoose.lua), the class
--                        tables, the misuse and failure conventions
--   LibMongoose.options  checks of numbers and headers; option tables to C structs
--   LibMongoose.util     URL and query strings, base64, hex, CRC-32, MD5, SHA-1
--   LibMongoose.event    the one reader of struct wss_event
--   LibMongoose.core     managers, connections, timers, polling and dispatch
--   LibMongoose.http     requests and responses
--   LibMongoose.ws       the WebSocket upgrade, fragments, pings, broadcasts
--   LibMongoose.router   the Express-like router and lm.static
--   LibMongoose.luv      mgr:attach(uv) and its attachment
local base = require("LibMongoose.base")
local options = require("LibMongoose.options")
local util = require("LibMongoose.util")
local core = require("LibMongoose.core")
require("LibMongoose.http")
require("LibMongoose.ws")
local router = require("LibMongoose.router")
require("LibMongoose.luv")
base.internal()

local type, getmetatable, pairs, ipairs = type, getmetatable, pairs, ipairs
local str_format, str_sub = string.format, string.sub
local tsort = table.sort

local raise, typeof = base.raise, base.typeof
local Manager, Conn, Timer, Attachment = base.Manager, base.Conn, base.Timer, base.Attachment

local lm = {}

-- Module functions.
lm.new = core.new
lm.router = router.router
lm.static = router.static
for _, name in ipairs({ "url_decode", "url_encode", "parse_query", "base64_encode", "base64_decode", "hex",
                        "crc32", "md5", "md5_hex", "sha1", "sha1_hex", "version" }) do
  lm[name] = util[name]
end

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
  Manager, Conn, Timer, base.Request, base.Response, base.Router, Attachment
lm.NO_TIMEOUT = base.NO_TIMEOUT
lm.HAS_WS = base.HAS_WS
lm.HANDLERS = {}
for name in pairs(options.HANDLERS) do lm.HANDLERS[#lm.HANDLERS + 1] = name end
tsort(lm.HANDLERS)
lm.EVENTS = base.EV
lm.RESULTS = base.RESULTS
lm.C = base.C

return lm
