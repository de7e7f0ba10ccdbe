--- LibMongoose.event: the one reader of `struct wss_event`.
--
-- Every field of an event that LibMongoose hands to a program is read here, and only
-- here: the dispatcher (LibMongoose.core) and the raw-event iterator (mgr:events) call
-- these functions, so a change of the event struct is a change of this file. Each
-- function copies what it reads into Lua values at once (payloads are valid only until
-- the next drain). They are small enough for the JIT to inline into the dispatcher.
local ffi = require("ffi")
local bit = require("bit")
local base = require("LibMongoose.base")
base.internal()

local ffi_string = ffi.string
local band = bit.band
local tonumber, tostring = tonumber, tostring

local EV = base.EV
local FLAG_BINARY, FLAG_FIN, FLAG_FIRST, FLAG_BY_PEER = base.FLAG.BINARY, base.FLAG.FIN, base.FLAG.FIRST,
  base.FLAG.BY_PEER
local OP_PING = base.OP.PING

local M = {}

--- The event kind (a number of lm.EVENTS).
function M.kind(ev) return ev.kind end

--- The id of the connection, listener or timer (0 for a wakeup without one), as a Lua
--- number: ids are table keys, and cdata keys compare by address.
function M.id(ev) return tonumber(ev.conn) end

--- The listener that accepted the connection (0: none).
function M.parent(ev) return tonumber(ev.parent) end

--- The payload: a message, bytes read, a close reason, an error message, wakeup data.
function M.data(ev) return ffi_string(ev.data.ptr, ev.data.len) end

--- "binary" or "text": the kind of a WS_MSG or WS_FRAGMENT.
function M.message_kind(ev) return band(ev.flags, FLAG_BINARY) ~= 0 and "binary" or "text" end

--- READ: the bytes and, for a udp listener, the sender's address (else nil).
function M.read(ev)
  local meta = ev.meta
  return ffi_string(ev.data.ptr, ev.data.len), meta.len > 0 and ffi_string(meta.ptr, meta.len) or nil
end

--- WS_OPEN: the request target and the subprotocol agreed (each nil when empty).
function M.ws_open(ev)
  local data, meta = ev.data, ev.meta
  return meta.len > 0 and ffi_string(meta.ptr, meta.len) or nil, data.len > 0 and ffi_string(data.ptr, data.len) or nil
end

--- WS_FRAGMENT: the bytes, "binary" or "text", whether it is the first and the last.
function M.fragment(ev)
  local flags = ev.flags
  return ffi_string(ev.data.ptr, ev.data.len), band(flags, FLAG_BINARY) ~= 0 and "binary" or "text",
    band(flags, FLAG_FIRST) ~= 0, band(flags, FLAG_FIN) ~= 0
end

--- WS_CTL: "ping" or "pong" (the flags carry the opcode), and the payload.
function M.control(ev)
  return ev.flags == OP_PING and "ping" or "pong", ffi_string(ev.data.ptr, ev.data.len)
end

--- CLOSE: the WebSocket close code (nil when none), the reason, and whether the peer
--- closed (or vanished).
function M.close(ev)
  local code = ev.code
  if code == 0 then code = nil end
  return code, ffi_string(ev.data.ptr, ev.data.len), band(ev.flags, FLAG_BY_PEER) ~= 0
end

--- ERROR: the message and the code.
function M.error(ev)
  return ffi_string(ev.data.ptr, ev.data.len), ev.code
end

--- Every field as a table, for mgr:events(): { kind, name, id, flags, code, data, meta,
--- binary (WS_MSG, WS_FRAGMENT) }, and the parent's id (0: none).
function M.fields(ev)
  local kind = ev.kind
  local t = { kind = kind, name = EV[kind] or tostring(kind), id = tonumber(ev.conn), flags = ev.flags,
              code = ev.code, data = ffi_string(ev.data.ptr, ev.data.len),
              meta = ffi_string(ev.meta.ptr, ev.meta.len) }
  if kind == EV.WS_MSG or kind == EV.WS_FRAGMENT then t.binary = band(t.flags, FLAG_BINARY) ~= 0 end
  return t, tonumber(ev.parent)
end

return M
