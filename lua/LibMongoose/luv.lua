--- LibMongoose.luv: driving a manager from a libuv (luv) loop: mgr:attach(uv, opts)
--- and the attachment it returns.
--
-- The default mode watches the manager's fd (uv.new_poll): no CPU while idle. A closed
-- manager lets go of its attachment through the attachment's `_release` and
-- `_complete_close`, which LibMongoose.core calls without knowing this module.
local base = require("LibMongoose.base")
local options = require("LibMongoose.options")
local core = require("LibMongoose.core")
base.internal()

local type, tonumber, pairs, getmetatable, setmetatable, require = type, tonumber, pairs, getmetatable,
  setmetatable, require
local str_format = string.format
local floor = math.floor

local C = base.C
local MAX_INT = base.MAX_INT
local raise, argerr, show, show_key = base.raise, base.argerr, base.show, base.show_key
local check_number = options.check_number
local check_mgr = core.check_mgr

local Manager, Attachment = base.Manager, base.Attachment

local M = {}

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

-- Stops and closes the luv handle of the attachment.
function Attachment:_release()
  local h = self._handle
  if self.mgr._attached == self then self.mgr._attached = nil end
  if not h then return end
  self._handle = nil
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
function Attachment:_complete_close()
  local uv = self._uv
  local mode = uv.loop_mode
  if type(mode) == "function" and mode() == nil then uv.run("nowait") end
end

--- Stops driving the manager from luv (closes the luv handle). Harmless twice.
function Attachment:detach()
  if getmetatable(self) ~= Attachment then argerr("detach", "handle", "attachment", self) end
  local had = self._handle ~= nil
  self:_release()
  if had then self:_complete_close() end
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

return M
