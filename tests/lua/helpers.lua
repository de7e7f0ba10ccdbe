-- Shared helpers of the busted specs: module paths, a monotonic clock, CPU time,
-- background processes (curl, openssl, python) that run while a manager is polled,
-- and a small HTTP client over the library's own tcp client.
local ffi = require("ffi")

local H = {}

local here = (debug.getinfo(1, "S").source:sub(2):match("^(.*)/[^/]*$")) or "."
H.dir = here
H.root = here .. "/../.."
package.path = H.root .. "/lua/?.lua;" .. here .. "/?.lua;" .. package.path

H.lm = require("LibMongoose")

if not pcall(ffi.typeof, "struct lmtest_timespec") then
  ffi.cdef([[
    struct lmtest_timespec { long tv_sec; long tv_nsec; };
    int clock_gettime(int clk, struct lmtest_timespec *ts);
    struct lmtest_timeval { long tv_sec; long tv_usec; };
    struct lmtest_rusage { struct lmtest_timeval ru_utime; struct lmtest_timeval ru_stime; long rest[14]; };
    int getrusage(int who, struct lmtest_rusage *usage);
    int getpid(void);
    int fcntl(int fd, int cmd, ...);
    int poll(void *fds, unsigned long nfds, int timeout);
  ]])
end
local ts = ffi.new("struct lmtest_timespec")
local ru = ffi.new("struct lmtest_rusage")

--- Monotonic milliseconds.
function H.now()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

--- CPU time (user + system) of this process in milliseconds, from getrusage(RUSAGE_SELF).
function H.cpu_ms()
  assert(ffi.C.getrusage(0, ru) == 0)
  return (tonumber(ru.ru_utime.tv_sec) + tonumber(ru.ru_stime.tv_sec)) * 1000
    + (tonumber(ru.ru_utime.tv_usec) + tonumber(ru.ru_stime.tv_usec)) / 1000
end

function H.sleep(ms)
  ffi.C.poll(nil, 0, ms)
end

local tmp
--- A temporary directory for this process, removed at exit.
function H.tmpdir()
  if not tmp then
    local p = io.popen("mktemp -d /tmp/lmtest.XXXXXX")
    tmp = p:read("*l")
    p:close()
    -- Removed when the helper module is collected at exit.
    H._tmp_guard = newproxy(true)
    getmetatable(H._tmp_guard).__gc = function() os.execute("rm -rf '" .. tmp .. "'") end
  end
  return tmp
end

function H.write_file(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
  return path
end

function H.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

function H.shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local nproc = 0
local Proc = {}
Proc.__index = Proc

--- Starts a shell command (a simple command: words, redirections, env assignments) in
--- the background; its stdout, stderr and exit status land in files, its pid in
--- base.pid. `stdin`: optional text fed to it.
function H.spawn(cmd, stdin)
  nproc = nproc + 1
  local base = H.tmpdir() .. "/p" .. nproc
  local input = "/dev/null"
  if stdin then input = H.write_file(base .. ".in", stdin) end
  local sh = string.format(
    "( %s < %s > %s.out 2> %s.err & echo $! > %s.pid.tmp; mv %s.pid.tmp %s.pid; wait $!; echo $? > %s.rc.tmp; mv %s.rc.tmp %s.rc ) 2>/dev/null &",
    cmd, input, base, base, base, base, base, base, base, base)
  os.execute(sh)
  return setmetatable({ base = base, cmd = cmd }, Proc)
end

function Proc:done()
  if self.rc then return true end
  local rc = H.read_file(self.base .. ".rc")
  if rc and rc:match("%d") then
    self.rc = tonumber(rc:match("%d+"))
    self.out = H.read_file(self.base .. ".out") or ""
    self.err = H.read_file(self.base .. ".err") or ""
    return true
  end
  return false
end

function Proc:output() return H.read_file(self.base .. ".out") or "" end

--- Stops the command (by its pid, with SIGTERM) if it is still running.
function Proc:kill()
  if self:done() then return end
  local pid
  for _ = 1, 100 do
    pid = H.read_file(self.base .. ".pid")
    if pid and pid:match("%d+") then break end
    H.sleep(10)
  end
  pid = pid and pid:match("%d+")
  if pid then os.execute("kill " .. pid .. " 2>/dev/null") end
  for _ = 1, 100 do
    if self:done() then return end
    H.sleep(10)
  end
end

--- Waits (without a manager to poll) until the command ends, at most `timeout_ms`;
--- kills it then. Returns true if it ended by itself.
function Proc:wait(timeout_ms)
  local deadline = H.now() + (timeout_ms or 10000)
  while not self:done() do
    if H.now() > deadline then
      self:kill()
      return false
    end
    H.sleep(10)
  end
  return true
end

--- A Lua script for a separate `luajit` process: the module paths of this checkout
--- (the library comes from $WSSERVER_LIB, inherited), then `body`. Returns its path.
local nscript = 0
function H.script(body)
  nscript = nscript + 1
  local path = H.tmpdir() .. "/script" .. nscript .. ".lua"
  H.write_file(path, string.format("package.path = %q .. package.path\n", H.root .. "/lua/?.lua;" .. H.dir .. "/?.lua;")
    .. body)
  return path
end

--- Polls `mgr` (5 ms at a time) until cond() is truthy or `timeout_ms` passes.
--- Returns cond()'s last value.
function H.run_until(mgr, cond, timeout_ms)
  local deadline = H.now() + (timeout_ms or 5000)
  local v = cond()
  while not v and H.now() < deadline do
    assert(mgr:poll(5))
    v = cond()
  end
  return v
end

--- Polls `mgr` for `ms` milliseconds.
function H.run_for(mgr, ms)
  local deadline = H.now() + ms
  while H.now() < deadline do assert(mgr:poll(5)) end
end

--- Runs a background command to its end while polling `mgr`. Returns the Proc.
function H.run_cmd(mgr, cmd, timeout_ms, stdin)
  local p = H.spawn(cmd, stdin)
  if not H.run_until(mgr, function() return p:done() end, timeout_ms or 10000) then
    p:kill()
    error("command timed out: " .. cmd)
  end
  return p
end

--- curl against the manager's server. `args` is the curl argument string; returns
--- status (number), headers (lower-case keys), body, the Proc.
function H.curl(mgr, args, timeout_ms)
  nproc = nproc + 1
  local base = H.tmpdir() .. "/c" .. nproc
  local p = H.run_cmd(mgr, string.format("curl -s -S --max-time 8 -D %s.hdr -o %s.body %s", base, base, args),
    timeout_ms)
  local hdr = H.read_file(base .. ".hdr") or ""
  -- The last header block (after any 100 Continue).
  local last = hdr
  for block in hdr:gmatch("(HTTP/[^\r\n]*\r\n.-\r\n\r\n)") do last = block end
  local status = tonumber(last:match("^HTTP/%S+ (%d+)"))
  local headers = {}
  for k, v in last:gmatch("\n([^:\r\n]+):%s*([^\r\n]*)") do headers[k:lower()] = v end
  return status, headers, H.read_file(base .. ".body") or "", p
end

--- Raw request over the library's own tcp client: sends `raw`, returns everything the
--- server sent until it closed or `until_fn(data)` is true.
function H.raw_request(mgr, port, raw, until_fn, timeout_ms)
  local got, closed = {}, false
  local c = assert(mgr:connect("tcp://127.0.0.1:" .. port, {
    connect = function(c) c:send(raw) end,
    read = function(_, d) got[#got + 1] = d end,
    close = function() closed = true end,
  }))
  H.run_until(mgr, function()
    return closed or (until_fn and until_fn(table.concat(got)))
  end, timeout_ms or 5000)
  if not closed then c:close() end
  return table.concat(got), closed
end

--- Parses an HTTP/1.1 response (Content-Length or chunked) from `s`:
--- status, headers (lower-case), body, rest.
function H.parse_response(s)
  local head, rest = s:match("^(.-)\r\n\r\n(.*)$")
  if not head then return nil end
  local status = tonumber(head:match("^HTTP/%S+ (%d+)"))
  local headers = {}
  for k, v in head:gmatch("\n([^:\r\n]+):%s*([^\r\n]*)") do
    k = k:lower()
    headers[k] = headers[k] and (headers[k] .. ", " .. v) or v
  end
  local body
  if headers["content-length"] then
    local n = tonumber(headers["content-length"])
    if #rest < n then return nil end
    body, rest = rest:sub(1, n), rest:sub(n + 1)
  elseif (headers["transfer-encoding"] or ""):lower():find("chunked") then
    local parts = {}
    while true do
      local size, after = rest:match("^(%x+)[^\r\n]*\r\n(.*)$")
      if not size then return nil end
      size = tonumber(size, 16)
      if size == 0 then
        local tail = after:match("^\r\n(.*)$")
        if not tail then return nil end
        rest = tail
        break
      end
      if #after < size + 2 then return nil end
      parts[#parts + 1] = after:sub(1, size)
      rest = after:sub(size + 3)
    end
    body = table.concat(parts)
  else
    body, rest = rest, ""
  end
  return status, headers, body, rest
end

--- One request over the library's tcp client, parsed.
function H.request(mgr, port, method, path, opts)
  opts = opts or {}
  local lines = { method .. " " .. path .. " HTTP/1.1", "Host: 127.0.0.1:" .. port, "Connection: close" }
  for k, v in pairs(opts.headers or {}) do lines[#lines + 1] = k .. ": " .. v end
  if opts.body then lines[#lines + 1] = "Content-Length: " .. #opts.body end
  local raw = table.concat(lines, "\r\n") .. "\r\n\r\n" .. (opts.body or "")
  local s = H.raw_request(mgr, port, raw, function(d)
    if method == "HEAD" then return d:find("\r\n\r\n") ~= nil end
    return H.parse_response(d) ~= nil
  end)
  if method == "HEAD" then
    local head = s:match("^(.-)\r\n\r\n")
    if not head then return nil end
    local h = {}
    for k, v in head:gmatch("\n([^:\r\n]+):%s*([^\r\n]*)") do h[k:lower()] = v end
    return tonumber(head:match("^HTTP/%S+ (%d+)")), h, ""
  end
  return H.parse_response(s)
end

--- Number of open file descriptors of this process (fcntl on each; no child process,
--- whose pipes would blur the count).
function H.fd_count()
  local n = 0
  for fd = 0, 4095 do
    if ffi.C.fcntl(fd, 1) >= 0 then n = n + 1 end -- F_GETFD
  end
  return n
end

--- Generates a CA, a server certificate for 127.0.0.1/localhost and a client certificate
--- (once per process). Returns a table of file paths.
local certs
function H.certs()
  if certs then return certs end
  local d = H.tmpdir() .. "/certs"
  os.execute("mkdir -p " .. d)
  local q = H.shell_quote
  local cmds = {
    "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=lmtest-ca -keyout %s/ca.key -out %s/ca.pem",
    "openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout %s/server.key -out %s/server.csr",
    "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nbasicConstraints=CA:FALSE\\nkeyUsage=digitalSignature,keyEncipherment\\nextendedKeyUsage=serverAuth\\n' > %s/server.ext",
    "openssl x509 -req -in %s/server.csr -CA %s/ca.pem -CAkey %s/ca.key -CAcreateserial -days 2 -extfile %s/server.ext -out %s/server.pem",
    "openssl req -newkey rsa:2048 -nodes -subj /CN=other.test -keyout %s/other.key -out %s/other.csr",
    "printf 'subjectAltName=DNS:other.test\\nextendedKeyUsage=serverAuth\\n' > %s/other.ext",
    "openssl x509 -req -in %s/other.csr -CA %s/ca.pem -CAkey %s/ca.key -CAcreateserial -days 2 -extfile %s/other.ext -out %s/other.pem",
    "openssl req -newkey rsa:2048 -nodes -subj /CN=alice/O=LmTest -keyout %s/client.key -out %s/client.csr",
    "printf 'basicConstraints=CA:FALSE\\nextendedKeyUsage=clientAuth\\n' > %s/client.ext",
    "openssl x509 -req -in %s/client.csr -CA %s/ca.pem -CAkey %s/ca.key -CAcreateserial -days 2 -extfile %s/client.ext -out %s/client.pem",
  }
  for _, c in ipairs(cmds) do
    local n = select(2, c:gsub("%%s", ""))
    local args = {}
    for i = 1, n do args[i] = d end
    local ok = os.execute("(" .. string.format(c, (table.unpack or unpack)(args)) .. ") >/dev/null 2>&1")
    assert(ok == 0 or ok == true, "openssl failed: " .. c)
  end
  certs = {
    dir = d, ca = d .. "/ca.pem", cert = d .. "/server.pem", key = d .. "/server.key",
    client_cert = d .. "/client.pem", client_key = d .. "/client.key",
    other_cert = d .. "/other.pem", other_key = d .. "/other.key",
  }
  local _ = q
  return certs
end

return H
