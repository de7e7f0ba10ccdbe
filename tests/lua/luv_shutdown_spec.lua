-- The usual ways a luv program stops, each in a separate `luajit` process that must
-- exit 0 (no signal). luv 1.44 (Debian's lua-luv) crashes at exit when a handle's
-- close has not completed (its loop finalizer runs the close callback of a handle
-- already collected): detach and close must let the close of the manager's handle
-- complete, whether the program calls them inside the loop or after it.
local H = require("helpers")

local PRELUDE = [[
local uv = require("luv")
local lm = require("LibMongoose")
local mgr = assert(lm.new())
local l = assert(mgr:listen("http://127.0.0.1:0", { http = function(req, res) res:text("hi") end }))
-- A luv client: GET /, then cb(reply) once the server closed the connection.
local function get(path, cb)
  local sock, got = uv.new_tcp(), {}
  sock:connect("127.0.0.1", l:port(), function(err)
    assert(not err, err)
    sock:read_start(function(_, data)
      if data then got[#got + 1] = data; return end
      sock:close()
      cb(table.concat(got))
    end)
    sock:write("GET " .. path .. " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
  end)
end
-- Ends the loop after `ms` whatever happens (a test must not hang).
local guard = uv.new_timer()
guard:start(5000, 0, function() print("guard fired"); os.exit(3) end)
guard:unref()
]]

-- name -> the end of a script; each prints "done" as its last act.
local CASES = {
  { "mgr:close() after attach (fd), no loop run", [[
    mgr:attach(uv)
    mgr:close()
  ]] },
  { "mgr:close() after attach (timer)", [[
    mgr:attach(uv, { mode = "timer", interval = 5 })
    mgr:close()
  ]] },
  { "mgr:close() after attach (idle)", [[
    mgr:attach(uv, { mode = "idle" })
    mgr:close()
  ]] },
  { "attachment:detach(), the manager left open", [[
    local a = mgr:attach(uv)
    a:detach()
  ]] },
  { "lm.close(attachment) and lm.detach(mgr)", [[
    local a = mgr:attach(uv, { mode = "timer", interval = 5 })
    lm.close(a)
    mgr:attach(uv)
    lm.detach(mgr)
  ]] },
  { "served a request, uv.stop() from the client, then mgr:close() after the loop", [[
    mgr:attach(uv)
    local reply
    get("/", function(r) reply = r; uv.stop() end)
    uv.run()
    assert(reply and reply:find("hi", 1, true), "no reply")
    mgr:close()
  ]] },
  { "served a request, then detach after the loop ended", [[
    local a = mgr:attach(uv, { mode = "timer", interval = 5 })
    local reply
    get("/", function(r) reply = r; uv.stop() end)
    uv.run()
    assert(reply, "no reply")
    a:detach()
  ]] },
  { "detach inside a luv callback, then the loop ends by itself", [[
    local a = mgr:attach(uv)
    get("/", function(r) a:detach() end)
    uv.run()
  ]] },
  { "mgr:close() inside a luv callback, then the loop ends by itself", [[
    mgr:attach(uv, { mode = "idle" })
    get("/", function(r) mgr:close() end)
    uv.run()
  ]] },
  { "mgr:close() inside the manager's own handler (fd mode)", [[
    l:on("http", function(req, res) res:text("bye"); mgr:close() end)
    mgr:attach(uv)
    local reply
    get("/", function(r) reply = r end)
    uv.run()
  ]] },
  { "detach and uv.stop() inside a callback, script ends at once", [[
    local a = mgr:attach(uv)
    get("/", function(r) a:detach(); uv.stop() end)
    uv.run()
  ]] },
  { "still attached when the script ends", [[
    mgr:attach(uv)
    get("/", function(r) uv.stop() end)
    uv.run()
  ]] },
}

describe("luv shutdown", function()
  for _, case in ipairs(CASES) do
    local name, body = case[1], case[2]
    it(name .. ": the process exits 0", function()
      local path = H.script(PRELUDE .. body .. "\nio.write('done\\n'); io.flush()\n")
      local p = H.spawn("luajit " .. H.shell_quote(path))
      assert.is_true(p:wait(15000), "the script hung")
      assert(p.rc == 0, string.format("exit status %d (%s)%s", p.rc,
        p.rc > 128 and ("signal " .. (p.rc - 128)) or "no signal", p.err ~= "" and (": " .. p.err) or ""))
      assert.equal("done\n", p.out)
      assert.equal("", p.err)
    end)
  end
end)
