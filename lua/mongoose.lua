--- mongoose.lua: the thin LuaJIT binding of libwsserver.
--
-- Returns a table:
--   bindings    the ffi.load()ed library: raw C functions, no checks (C.wss_mgr_new(...))
--   events      event kind number -> name ("HTTP_MSG") and name -> number, from the header's enum
--   results     result number -> name ("NOT_FOUND") and name -> number
--   flags       event flag bit -> name ("BINARY") and name -> bit
--   opcodes     WebSocket opcode number -> name ("PING") and name -> number
--   NO_TIMEOUT  WSS_NO_TIMEOUT, the timeout option value that turns a timeout off
--   cdefs       the C declarations, generated from the same source as include/wsserver.h
--   path        where the library was loaded from
--
-- This module is the one owner of the ABI's numbers on the Lua side: every table above
-- is read from the generated declarations when the module loads, none is written by
-- hand, and LibMongoose takes its numbers from here.
--
-- The library is looked up, in order: $WSSERVER_LIB; next to this file; the project's
-- build output (../build, ../target/release); an installed tree (`make install`, a
-- luarocks tree); package.cpath; the system's search path ("wsserver").
local ffi = require("ffi")

local cdefs = require("wsserver_cdefs")

-- Guard against a second cdef of the same types (another copy of this module, or a
-- program that declared them itself): ffi.cdef would raise "attempt to redefine".
if not pcall(ffi.typeof, "wss_event") then
  ffi.cdef(cdefs)
end

local function here()
  local src = debug.getinfo(1, "S").source
  if src:sub(1, 1) == "@" then
    return (src:sub(2):match("^(.*)/[^/]*$") or ".")
  end
  return "."
end

local function file_exists(p)
  local f = io.open(p, "rb")
  if f then f:close() return true end
  return false
end

local function load_library()
  local tried = {}
  local env = os.getenv("WSSERVER_LIB")
  local candidates = {}
  if env and env ~= "" then candidates[#candidates + 1] = env end
  local dir = here()
  -- Next to this file; the project's build output; `make install` (share/lua/5.1 ->
  -- lib); a luarocks tree (share/lua/5.1 -> lib/lua/5.1).
  for _, rel in ipairs({ "/libwsserver.so", "/../build/libwsserver.so", "/../target/release/libwsserver.so",
                         "/../../../lib/libwsserver.so", "/../../../lib/lua/5.1/libwsserver.so" }) do
    candidates[#candidates + 1] = dir .. rel
  end
  -- Lua's C module path (LUA_CPATH, `luarocks path`).
  local found = package.searchpath and package.searchpath("libwsserver", package.cpath)
  if found then candidates[#candidates + 1] = found end
  for _, p in ipairs(candidates) do
    if file_exists(p) then
      local ok, lib = pcall(ffi.load, p)
      if ok then return lib, p end
      tried[#tried + 1] = p .. " (" .. tostring(lib) .. ")"
    else
      tried[#tried + 1] = p .. " (missing)"
    end
  end
  local ok, lib = pcall(ffi.load, "wsserver")
  if ok then return lib, "wsserver" end
  tried[#tried + 1] = "wsserver (" .. tostring(lib) .. ")"
  error("mongoose.lua: cannot load libwsserver; tried:\n  " .. table.concat(tried, "\n  "), 2)
end

local bindings, path = load_library()

--- The constants of `enum NAME { PREFIX_X = n, ... }` as a two-way table (number -> "X",
--- "X" -> number). The FFI cannot list an enum's members, so their names come from the
--- declarations' text; each value is the FFI's own reading of the constant
--- (bindings.WSS_FLAG_TEXT: the clib namespace resolves ffi.cdef'd constants).
local function enum_table(enum_name, prefix)
  local body = cdefs:match("enum " .. enum_name .. "%s*{(.-)}")
  assert(body, "mongoose.lua: enum " .. enum_name .. " not found in the declarations")
  local t = {}
  for name in body:gmatch(prefix .. "([%w_]+)%s*=") do
    local n = bindings[prefix .. name]
    t[n] = name
    t[name] = n
  end
  assert(next(t), "mongoose.lua: enum " .. enum_name .. " has no " .. prefix .. " constant")
  return t
end

return {
  bindings = bindings,
  events = enum_table("wss_event_kind", "WSS_EV_"),
  results = enum_table("wss_result", "WSS_RESULT_"),
  flags = enum_table("wss_flag", "WSS_FLAG_"),
  opcodes = enum_table("wss_opcode", "WSS_OP_"),
  NO_TIMEOUT = bindings.WSS_NO_TIMEOUT,
  cdefs = cdefs,
  path = path,
}
