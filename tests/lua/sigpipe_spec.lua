-- A vanished peer must not kill a LuaJIT host. The server (sigpipe_server.lua) runs in
-- a luajit process of its own with the DEFAULT SIGPIPE disposition, as LuaJIT
-- programs have it (Rust test binaries ignore SIGPIPE, so the Rust tests cannot see
-- this). A client (vanish_client.py) asks for a large reply and goes away before or
-- while the server writes it: a FIN right after the request, a close with unread
-- data, a reset (SO_LINGER 0) or a half-close, during a streamed
-- res:write, a 1 MiB res:send and 100 KB WebSocket sends, over http and https. The
-- server must stay alive, serve a later request, and exit 0 when told to.
local H = require("helpers")

local PYTHON = os.getenv("LM_PYTHON") or "python3"

local function python_ok()
  return os.execute(PYTHON .. " -c 'import ssl' >/dev/null 2>&1") == 0
end

-- Starts the server; returns the Proc and its two ports (nil, message on failure).
local function start_server()
  local certs = H.certs()
  local path = H.script("arg = { " .. string.format("%q, %q", certs.cert, certs.key) .. " }\n"
    .. "dofile(" .. string.format("%q", H.dir .. "/sigpipe_server.lua") .. ")\n")
  local p = H.spawn("luajit " .. H.shell_quote(path))
  local deadline = H.now() + 10000
  while H.now() < deadline do
    local http, https = p:output():match("ports (%d+) (%d+)")
    if http then return p, tonumber(http), tonumber(https) end
    if p:done() then break end
    H.sleep(10)
  end
  p:kill()
  p:done()
  return nil, "the server did not start: " .. tostring(p.err) .. tostring(p.out)
end

-- Waits until the server's output has `n` lines matching `pattern`, or it ended, or
-- `ms` passed. Returns whether the lines came.
local function wait_output(p, pattern, n, ms)
  local deadline = H.now() + ms
  while H.now() < deadline do
    local count = 0
    for _ in p:output():gmatch(pattern) do count = count + 1 end
    if count >= n then return true end
    if p:done() then return false end
    H.sleep(10)
  end
  return false
end

local function status_text(p)
  if not p:done() then return "still running" end
  local sig = p.rc > 128 and (" (signal " .. (p.rc - 128) .. (p.rc == 141 and ": SIGPIPE" or "") .. ")") or ""
  return "exited with status " .. p.rc .. sig .. "; output: " .. p.out .. p.err
end

-- curl against the server; returns the body (nil on failure).
local function fetch(port, tls, path)
  local url = string.format("%s://127.0.0.1:%d%s", tls and "https" or "http", port, path)
  local c = H.spawn("curl -s -S -k --max-time 5 " .. H.shell_quote(url))
  if not c:wait(10000) or c.rc ~= 0 then return nil, c.err end
  return c.out
end

describe("SIGPIPE in a LuaJIT host", function()
  local server

  before_each(function() server = nil end)
  after_each(function()
    if server then server:kill() end
  end)

  for _, tls in ipairs({ false, true }) do
    for _, kind in ipairs({ "stream", "big", "ws" }) do
      for _, how in ipairs({ "fin", "close", "rst", "half" }) do
        local name = string.format("%s %s, the client vanishes (%s)", tls and "https" or "http", kind, how)
        it(name .. ": the server lives on, serves, exits 0", function()
          if not python_ok() then return pending("no python3 with ssl") end
          local p, http, https = start_server()
          assert(p, http)
          server = p
          assert.matches("sigpipe%-was", p:output()) -- the server set SIG_DFL itself
          local port = tls and https or http
          local client = H.spawn(string.format("%s %s %d %s %s %s", PYTHON, H.shell_quote(H.dir .. "/vanish_client.py"),
            port, tls and "1" or "0", kind, how))
          assert(client:wait(15000), "the client hung")
          assert(client.rc == 0 and client.out:find("vanished"),
            "the client failed: " .. tostring(client.err) .. "; server " .. status_text(p))
          -- the server noticed: the victim connection closed (or a send failed)
          local noticed = wait_output(p, "\n(closed)", 1, 10000)
          assert(not p:done(), "the server died: " .. status_text(p))
          assert(noticed, "the server never saw the client go: " .. p:output())
          -- more writes after the close, then a later request on each scheme
          H.sleep(100)
          assert(not p:done(), "the server died: " .. status_text(p))
          assert.equal("alive", fetch(http, false, "/alive"))
          assert.equal("alive", fetch(https, true, "/alive"))
          assert(not p:done(), "the server died: " .. status_text(p))
          -- and it ends cleanly when told to
          assert.equal("bye", fetch(http, false, "/quit"))
          assert(p:wait(10000), "the server did not exit")
          assert(p.rc == 0, "the server " .. status_text(p))
          assert.matches("clean%-exit", p.out)
        end)
      end
    end
  end
end)
