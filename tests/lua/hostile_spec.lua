-- Hostile input from a LuaJIT host (issue 15, items 3-5), by fault class:
--   hostile paths  a FIFO, a device or a directory where a file is expected (res:file,
--                  res:dir, lm.static, app:static; TLS certificates, keys and CAs):
--                  404 or TLS_CONFIG at once, never a poll thread blocked in open(2);
--   hostile ids    a live id with any of bits 53-63 set, through every id-taking C
--                  function of the thin binding and through LibMongoose: NOT_FOUND,
--                  the live object untouched, events under the stored ids;
--   far timers     UINT64_MAX, 2^63 and alike: wss_mgr_next_timeout_ms and
--                  mgr:next_timeout() stay positive; a luv attachment neither spins
--                  nor fires.
-- A library that blocks on a path would block this process: those cases run in child
-- luajit processes under `timeout` (and a memory limit, for /dev/zero), several at once.
local H = require("helpers")
local lm = H.lm
local ffi = require("ffi")
local bit = require("bit")
local mg = require("mongoose")
local uv = require("luv")

local C = mg.bindings
local R = mg.results
local EV = mg.events

local THIS = "[^:]*hostile_spec%.lua:%d+: "

-- fn must raise a misuse error reported at the caller's line whose message contains
-- each of the plain strings in `wants`.
local function misuse(wants, fn, label)
  local ok, err = pcall(fn)
  label = label and (label .. ": ") or ""
  assert(not ok, label .. "no error raised (expected " .. table.concat(wants, " ... ") .. ")")
  err = tostring(err)
  assert(err:match("^" .. THIS), label .. "error not reported at the caller: " .. err:sub(1, 300))
  for _, w in ipairs(wants) do
    assert(err:find(w, 1, true), label .. "error '" .. err:sub(1, 300) .. "' does not contain '" .. w .. "'")
  end
  return err
end

---------------------------------------------------------------------------------------
-- Child processes

-- The child: one server (or one listen call), one hostile request, then one ordinary
-- request; prints `return { ... }` with what it saw and how long the hostile part took.
local CHILD = [[
local H = require("helpers")
local lm = H.lm
local mode = arg[1]
local function q(v) return type(v) == "string" and string.format("%q", v) or tostring(v) end
local function report(t)
  local parts = {}
  for k, v in pairs(t) do parts[#parts + 1] = k .. " = " .. q(v) end
  io.stdout:write("return { " .. table.concat(parts, ", ") .. " }\n")
  io.stdout:flush()
end
local mgr = assert(lm.new())
if mode == "http" then
  -- arg: how (file, dir, static, app_static), root, the hostile URL path, the
  -- ordinary URL path, and for "file" the path given to res:file.
  local how, root, bad_url, ok_url, target = arg[2], arg[3], arg[4], arg[5], arg[6]
  local handler
  if how == "file" then
    handler = function(req, res)
      if req.path == ok_url then assert(res:file(root .. "/a.txt")) else assert(res:file(target)) end
    end
  elseif how == "dir" then
    handler = function(_, res) assert(res:dir(root)) end
  elseif how == "static" then
    handler = lm.router():use(lm.static(root))
  elseif how == "app_static" then
    handler = lm.router():static("/s", root)
  end
  local l = assert(mgr:listen("http://127.0.0.1:0", { http = handler }))
  local t0 = H.now()
  local status, _, body = H.request(mgr, l:port(), "GET", bad_url)
  local ms = H.now() - t0
  local ok_status, _, ok_body = H.request(mgr, l:port(), "GET", ok_url)
  report({ status = status, ms = ms, body = body and body:sub(1, 200), ok_status = ok_status, ok_body = ok_body })
elseif mode == "listen" or mode == "connect" then
  -- arg: the URL, then option=value pairs of the tls table (`sni_cert`, `sni_key`:
  -- one SNI entry); `good_*` options: a listen with these that must still work
  -- afterwards.
  local url, tls, good = arg[2], {}, {}
  for i = 3, #arg do
    local k, v = arg[i]:match("^([%w_]+)=(.*)$")
    if k:match("^good_") then good[k:sub(6)] = v
    elseif k:match("^sni_") then tls.sni = tls.sni or { {} }; tls.sni[1][k:sub(5)] = v
    else tls[k] = v end
  end
  local t0 = H.now()
  local obj, err, name
  if mode == "listen" then
    obj, err, name = mgr:listen(url, { tls = tls })
  else
    obj, err, name = mgr:connect(url, { tls = tls })
  end
  local ms = H.now() - t0
  local after = assert(mgr:listen("https://127.0.0.1:0", { tls = good, http = function(_, res) res:text("fine") end }))
  report({ ok = obj ~= nil, err = err, name = name, ms = ms, after_port = after:port() })
end
mgr:close()
]]

local child_path
-- Runs every child of `cases` ({ label, args... }) at once, each under `timeout` and a
-- 2 GiB address-space limit (none under AddressSanitizer). Returns label -> { res = the reported table or nil,
-- rc, err, out }.
local function run_children(cases)
  child_path = child_path or H.script(CHILD)
  local procs = {}
  for _, c in ipairs(cases) do
    local words = { "luajit", H.shell_quote(child_path) }
    for i = 2, #c do words[#words + 1] = H.shell_quote(c[i]) end
    -- AddressSanitizer (scripts/asan.sh preloads its runtime) reserves terabytes of
    -- address space for its shadow memory: no address-space limit under it.
    local limit = (os.getenv("LD_PRELOAD") or ""):find("asan", 1, true) and ""
      or "ulimit -v 2097152; "
    local inner = limit .. "exec timeout -s KILL 8 " .. table.concat(words, " ")
    procs[#procs + 1] = { label = c[1], p = H.spawn("sh -c " .. H.shell_quote(inner)) }
  end
  local deadline = H.now() + 15000
  local results = {}
  for _, e in ipairs(procs) do
    local left = deadline - H.now()
    e.p:wait(left > 0 and left or 0)
    e.p:kill()
    local out = e.p:output()
    local chunk = out:match("(return {.-}\n)")
    local res = chunk and loadstring(chunk)()
    results[e.label] = { res = res, rc = e.p.rc, err = (e.p.err or ""):sub(1, 400), out = out:sub(1, 400) }
  end
  return results
end

local function describe_child(label, r)
  return string.format("%s: rc %s, out %q, err %q", label, tostring(r.rc), r.out, r.err)
end

---------------------------------------------------------------------------------------
describe("hostile paths", function()
  local dir, root, fifo, certs

  setup(function()
    certs = H.certs()
    dir = H.tmpdir() .. "/hostile"
    root = dir .. "/root"
    os.execute("rm -rf " .. H.shell_quote(dir) .. " && mkdir -p " .. H.shell_quote(root .. "/sub"))
    H.write_file(root .. "/a.txt", "plain file\n")
    fifo = root .. "/pipe"
    local function sh(cmd)
      local ok = os.execute(cmd)
      assert(ok == 0 or ok == true, "failed: " .. cmd)
    end
    sh("mkfifo " .. H.shell_quote(fifo))
    sh("ln -s pipe " .. H.shell_quote(root .. "/link"))
  end)

  teardown(function()
    if dir then os.execute("rm -rf " .. H.shell_quote(dir)) end
  end)

  it("res:file, res:dir, lm.static and app:static answer 404 at once for a FIFO, a device or a directory, and go on serving", function()
    local cases = {
      { "file fifo", "http", "file", root, "/x", "/ok", fifo },
      { "file symlink to fifo", "http", "file", root, "/x", "/ok", root .. "/link" },
      { "file /dev/zero", "http", "file", root, "/x", "/ok", "/dev/zero" },
      { "file /dev/null", "http", "file", root, "/x", "/ok", "/dev/null" },
      { "file directory", "http", "file", root, "/x", "/ok", root .. "/sub" },
      { "dir fifo", "http", "dir", root, "/pipe", "/a.txt" },
      { "dir symlink to fifo", "http", "dir", root, "/link", "/a.txt" },
      { "static fifo", "http", "static", root, "/pipe", "/a.txt" },
      { "app:static fifo", "http", "app_static", root, "/s/pipe", "/s/a.txt" },
    }
    local results = run_children(cases)
    local bad = {}
    for _, c in ipairs(cases) do
      local r = results[c[1]]
      local res = r.res
      if not res then
        bad[#bad + 1] = describe_child(c[1], r)
      elseif res.status ~= 404 or res.ms > 3000 or res.ok_status ~= 200 or res.ok_body ~= "plain file\n" then
        bad[#bad + 1] = string.format("%s: status %s in %d ms (404 expected), then %s %q (200 expected)",
          c[1], tostring(res.status), res.ms, tostring(res.ok_status), tostring(res.ok_body))
      end
    end
    assert(#bad == 0, "\n" .. table.concat(bad, "\n"))
  end)

  it("a FIFO, a device or a directory as a TLS certificate, key or CA is TLS_CONFIG at once, naming the path", function()
    local good = { "good_cert=" .. certs.cert, "good_key=" .. certs.key }
    local function listen_case(label, url, tls_args)
      local c = { label, "listen", url }
      for _, a in ipairs(tls_args) do c[#c + 1] = a end
      for _, a in ipairs(good) do c[#c + 1] = a end
      return c
    end
    local cases, paths = {}, {}
    for _, bad in ipairs({ { "fifo", fifo }, { "/dev/zero", "/dev/zero" }, { "directory", root .. "/sub" } }) do
      local what, path = bad[1], bad[2]
      local l1 = "https cert " .. what
      cases[#cases + 1] = listen_case(l1, "https://127.0.0.1:0", { "cert=" .. path, "key=" .. certs.key })
      local l2 = "https key " .. what
      cases[#cases + 1] = listen_case(l2, "https://127.0.0.1:0", { "cert=" .. certs.cert, "key=" .. path })
      local l3 = "wss cert " .. what
      cases[#cases + 1] = listen_case(l3, "wss://127.0.0.1:0", { "cert=" .. path, "key=" .. certs.key })
      local l4 = "tls key " .. what
      cases[#cases + 1] = listen_case(l4, "tls://127.0.0.1:0", { "cert=" .. certs.cert, "key=" .. path })
      local l5 = "https client ca " .. what
      cases[#cases + 1] = listen_case(l5, "https://127.0.0.1:0",
        { "cert=" .. certs.cert, "key=" .. certs.key, "ca=" .. path })
      local l6 = "https sni cert " .. what
      cases[#cases + 1] = listen_case(l6, "https://127.0.0.1:0",
        { "cert=" .. certs.cert, "key=" .. certs.key, "sni_cert=" .. path, "sni_key=" .. certs.other_key })
      local l7 = "connect ca " .. what
      cases[#cases + 1] = { l7, "connect", "tls://127.0.0.1:1", "ca=" .. path, good[1], good[2] }
      local l8 = "connect client key " .. what
      cases[#cases + 1] = { l8, "connect", "tls://127.0.0.1:1", "cert=" .. certs.client_cert, "key=" .. path,
        good[1], good[2] }
      for _, l in ipairs({ l1, l2, l3, l4, l5, l6, l7, l8 }) do paths[l] = path end
    end
    local results = run_children(cases)
    local bad = {}
    for _, c in ipairs(cases) do
      local r = results[c[1]]
      local res = r.res
      if not res then
        bad[#bad + 1] = describe_child(c[1], r)
      elseif res.ok or res.name ~= "TLS_CONFIG" or not tostring(res.err):find("^TLS_CONFIG: ")
          or not tostring(res.err):find(paths[c[1]], 1, true) or res.ms > 3000 or not res.after_port then
        bad[#bad + 1] = string.format("%s: %s, %s, %s in %d ms (nil, \"TLS_CONFIG: ... %s ...\" expected)",
          c[1], tostring(res.ok), tostring(res.err), tostring(res.name), res.ms, paths[c[1]])
      end
    end
    assert(#bad == 0, "\n" .. table.concat(bad, "\n"))
  end)
end)

---------------------------------------------------------------------------------------
-- Ids: the thin binding, a manager driven by hand

local TWO53 = 0x20000000000000ULL
-- The high bits an id must not have: each of bits 53-63 alone, then all of them.
local HIGH = {}
for b = 53, 63 do HIGH[#HIGH + 1] = { "bit " .. b, bit.lshift(1ULL, b) } end
HIGH[#HIGH + 1] = { "bits 53-63", 0xFFE0000000000000ULL }

local function u64(id) return ffi.new("uint64_t", id) end
local function rname(r) return (R[tonumber(r)] or tostring(r)) end

-- A manager of the thin binding: every event drained is recorded (kind, conn, parent,
-- data); `wait(pred)` polls until pred() or 5 s.
local function raw_manager()
  local m = ffi.gc(C.wss_mgr_new(nil), C.wss_mgr_free)
  assert(m ~= nil)
  local self = { m = m, events = {} }
  local ev = ffi.new("wss_event[1]")
  local idout = ffi.new("wss_id[1]")
  function self.err() return ffi.string(C.wss_mgr_last_error(m)) end
  function self.pump(ms)
    C.wss_mgr_poll(m, ms or 0, nil)
    while C.wss_mgr_next_event(m, ev) do
      local e = ev[0]
      self.events[#self.events + 1] = { kind = tonumber(e.kind), name = EV[tonumber(e.kind)], conn = u64(e.conn),
        parent = u64(e.parent), code = tonumber(e.code), data = ffi.string(e.data.ptr, e.data.len) }
    end
  end
  function self.wait(pred, ms)
    local deadline = H.now() + (ms or 5000)
    local v = pred()
    while not v and H.now() < deadline do
      self.pump(5)
      v = pred()
    end
    return v
  end
  function self.find(kind, fn)
    for _, e in ipairs(self.events) do
      if e.kind == EV[kind] and (not fn or fn(e)) then return e end
    end
  end
  function self.listen(url)
    assert(C.wss_mgr_listen(m, url, nil, idout) == 0, self.err())
    return u64(idout[0])
  end
  function self.connect(url)
    assert(C.wss_mgr_connect(m, url, nil, idout) == 0, self.err())
    return u64(idout[0])
  end
  function self.port(id)
    local p = ffi.new("uint16_t[1]")
    local r = C.wss_listener_port(m, id, p)
    return r == 0 and p[0] or nil, r
  end
  -- What the peers received: the concatenated data of READ and WS_MSG events of `id`.
  function self.received(id)
    local t = {}
    for _, e in ipairs(self.events) do
      if e.conn == id and (e.kind == EV.READ or e.kind == EV.WS_MSG) then t[#t + 1] = e.data end
    end
    return table.concat(t)
  end
  return self
end

describe("hostile ids through the thin binding", function()
  local rm, dir

  before_each(function()
    rm = raw_manager()
    dir = H.tmpdir() .. "/ids"
    os.execute("mkdir -p " .. H.shell_quote(dir))
    H.write_file(dir .. "/a.txt", "HIJACK file\n")
  end)
  after_each(function()
    C.wss_mgr_free(ffi.gc(rm.m, nil))
    rm = nil
  end)

  it("every id-taking function answers NOT_FOUND for a live id with any of bits 53-63 set, and the object is untouched", function()
    local m = rm.m
    -- One live object of each kind.
    local L_tcp = rm.listen("tcp://127.0.0.1:0")
    local L_ws = rm.listen("ws://127.0.0.1:0")
    local L_http = rm.listen("http://127.0.0.1:0")
    local L_udp = rm.listen("udp://127.0.0.1:0")
    local udp_port = rm.port(L_udp)
    local C_tcp = rm.connect("tcp://127.0.0.1:" .. rm.port(L_tcp))
    local C_ws = rm.connect("ws://127.0.0.1:" .. rm.port(L_ws) .. "/")
    local C_http = rm.connect("tcp://127.0.0.1:" .. rm.port(L_http))
    local req = "GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n"
    assert.equal(0, C.wss_conn_send(m, C_http, req, #req))
    local tid = ffi.new("wss_id[1]")
    assert.equal(0, C.wss_timer_add(m, 60000, false, tid))
    local T = u64(tid[0])
    local S_tcp, S_ws, S_http
    assert.truthy(rm.wait(function()
      local a = rm.find("ACCEPT", function(e) return e.parent == L_tcp end)
      local w = rm.find("WS_OPEN", function(e) return e.parent == L_ws end)
      local h = rm.find("HTTP_MSG", function(e) return e.parent == L_http end)
      S_tcp, S_ws, S_http = a and a.conn, w and w.conn, h and h.conn
      return S_tcp and S_ws and S_http and rm.find("WS_OPEN", function(e) return e.conn == C_ws end)
        and rm.find("CONNECT", function(e) return e.conn == C_tcp end)
    end), "setup: " .. rm.err())
    local ports = {}
    for _, l in ipairs({ L_tcp, L_ws, L_http, L_udp }) do ports[#ports + 1] = rm.port(l) end

    -- { name, the live ids it takes, function(id) -> result }. Every payload says HIJACK.
    local P = "HIJACK"
    local size = ffi.new("size_t[1]")
    local buf = ffi.new("char[128]")
    local str, str2 = ffi.new("wss_str[1]"), ffi.new("wss_str[1]")
    local serve = ffi.new("wss_serve_opts")
    serve.struct_size = ffi.sizeof("wss_serve_opts")
    serve.root_dir = dir
    local CALLS = {
      -- first what only reads or sends, then what answers, closes or cancels
      { "wss_conn_buffered", { S_tcp, C_tcp }, function(id) return C.wss_conn_buffered(m, id, size) end },
      { "wss_conn_peer", { S_tcp, C_tcp }, function(id) return C.wss_conn_peer(m, id, buf, 128, size) end },
      { "wss_conn_local", { S_tcp, L_tcp }, function(id) return C.wss_conn_local(m, id, buf, 128, size) end },
      { "wss_listener_port", { L_tcp, L_ws, L_http, L_udp },
        function(id) return C.wss_listener_port(m, id, ffi.new("uint16_t[1]")) end },
      { "wss_conn_tls_info", { S_tcp, S_http }, function(id) return C.wss_conn_tls_info(m, id, ffi.new("wss_tls_info[1]")) end },
      { "wss_http_request_get", { S_http }, function(id) return C.wss_http_request_get(m, id, ffi.new("wss_http_request[1]")) end },
      { "wss_http_header", { S_http }, function(id) return C.wss_http_header(m, id, "Host", str) end },
      { "wss_http_header_at", { S_http }, function(id) return C.wss_http_header_at(m, id, 0, str, str2) end },
      { "wss_conn_send", { S_tcp, C_tcp, L_udp }, function(id) return C.wss_conn_send(m, id, P, #P) end },
      { "wss_udp_send_to", { L_udp }, function(id) return C.wss_udp_send_to(m, id, "127.0.0.1:" .. udp_port, P, #P) end },
      { "wss_ws_send", { S_ws, C_ws }, function(id) return C.wss_ws_send(m, id, P, #P, 1) end },
      { "wss_ws_send_fragment", { S_ws, C_ws }, function(id) return C.wss_ws_send_fragment(m, id, P, #P, 1, true) end },
      { "wss_ws_broadcast", { L_ws }, function(id) return C.wss_ws_broadcast(m, id, P, #P, 1, size) end },
      { "wss_http_chunk", { S_http }, function(id) return C.wss_http_chunk(m, id, P, #P) end },
      { "wss_http_reply", { S_http }, function(id) return C.wss_http_reply(m, id, 200, nil, P, #P) end },
      { "wss_http_chunked_begin", { S_http }, function(id) return C.wss_http_chunked_begin(m, id, 200, "X-Hijack: 1\r\n") end },
      { "wss_http_serve_file", { S_http }, function(id) return C.wss_http_serve_file(m, id, dir .. "/a.txt", nil) end },
      { "wss_http_serve_dir", { S_http }, function(id) return C.wss_http_serve_dir(m, id, serve) end },
      { "wss_ws_upgrade", { S_http }, function(id) return C.wss_ws_upgrade(m, id, nil) end },
      { "wss_ws_close", { S_ws, C_ws }, function(id) return C.wss_ws_close(m, id, 4000, P) end },
      { "wss_timer_cancel", { T }, function(id) return C.wss_timer_cancel(m, id) end },
      { "wss_conn_close", { S_tcp, C_tcp, S_ws, C_ws, S_http, C_http, L_tcp, L_ws, L_http, L_udp },
        function(id) return C.wss_conn_close(m, id, false) end },
    }
    local bad, n = {}, 0
    -- wss_conn_next_event takes no event of the live id: a READ of S_tcp is queued
    assert.equal(0, C.wss_conn_send(m, C_tcp, "queued", 6))
    local ev = ffi.new("wss_event[1]")
    local queued = ffi.new("size_t[1]")
    local deadline = H.now() + 5000
    repeat C.wss_mgr_poll(m, 5, queued) until queued[0] > 0 or H.now() > deadline
    for _, high in ipairs(HIGH) do
      n = n + 1
      if C.wss_conn_next_event(m, bit.bor(S_tcp, high[2]), ev) then
        bad[#bad + 1] = "wss_conn_next_event(" .. tostring(S_tcp) .. " | " .. high[1] .. ") took an event of the live id"
      end
    end
    assert.truthy(rm.wait(function() return rm.received(S_tcp) == "queued" end))
    for _, call in ipairs(CALLS) do
      for _, live in ipairs(call[2]) do
        for _, high in ipairs(HIGH) do
          local r = call[3](bit.bor(live, high[2]))
          n = n + 1
          if r ~= R.NOT_FOUND then
            bad[#bad + 1] = string.format("%s(%s | %s) = %s", call[1], tostring(live), high[1], rname(r))
          end
        end
      end
    end
    assert.is_true(n >= 300)
    assert(#bad == 0, #bad .. " of " .. n .. " calls acted:\n" .. table.concat(bad, "\n", 1, math.min(#bad, 40))
      .. (#bad > 40 and "\n..." or ""))

    -- Untouched: nothing HIJACK reached a peer, the request still waits, the timer
    -- runs, every object still works under its real id.
    rm.pump(50)
    for _, e in ipairs(rm.events) do
      assert(not e.data:find("HIJACK"), e.name .. " of " .. tostring(e.conn) .. " carried " .. e.data)
      assert(e.kind ~= EV.CLOSE, "a CLOSE of " .. tostring(e.conn) .. " before any real close")
    end
    assert.equal("", rm.received(C_http))
    assert.equal(0, C.wss_http_request_get(m, S_http, ffi.new("wss_http_request[1]")))
    assert.equal(0, C.wss_http_reply(m, S_http, 200, nil, "real", 4))
    assert.equal(0, C.wss_conn_send(m, S_tcp, "real tcp", 8))
    assert.equal(0, C.wss_ws_send(m, S_ws, "real ws", 7, 1))
    assert.truthy(rm.wait(function()
      return rm.received(C_http):find("\r\n\r\nreal$") and rm.received(C_tcp) == "real tcp"
        and rm.received(C_ws) == "real ws"
    end))
    for i, l in ipairs({ L_tcp, L_ws, L_http, L_udp }) do assert.equal(ports[i], rm.port(l)) end
    assert.equal(0, C.wss_timer_cancel(m, T))

    -- Closing the real objects: each CLOSE carries the stored id.
    for _, id in ipairs({ L_tcp, L_ws, L_http, L_udp, S_tcp }) do
      assert.equal(0, C.wss_conn_close(m, id, false))
      assert.truthy(rm.wait(function() return rm.find("CLOSE", function(e) return e.conn == id end) end),
        "no CLOSE event for " .. tostring(id))
    end
    -- Id 0 and the ids just closed (stale) name nothing either.
    for _, id in ipairs({ u64(0), L_tcp, L_udp, S_tcp }) do
      assert.equal(R.NOT_FOUND, C.wss_listener_port(m, id, ffi.new("uint16_t[1]")))
      assert.equal(R.NOT_FOUND, C.wss_conn_buffered(m, id, size))
      assert.equal(R.NOT_FOUND, C.wss_conn_close(m, id, false))
      assert.equal(R.NOT_FOUND, C.wss_timer_cancel(m, id))
    end
    assert.equal(R.NOT_FOUND, C.wss_timer_cancel(m, T))
    -- No event ever named an id at or above 2^53, as conn or as parent.
    for _, e in ipairs(rm.events) do
      assert(e.conn < TWO53 and e.parent < TWO53, e.name .. " with conn " .. tostring(e.conn) .. ", parent " .. tostring(e.parent))
    end
  end)

  it("wss_send_threadsafe with such an id reaches no live connection", function()
    local m = rm.m
    local L_tcp = rm.listen("tcp://127.0.0.1:0")
    local L_ws = rm.listen("ws://127.0.0.1:0")
    local C_tcp = rm.connect("tcp://127.0.0.1:" .. rm.port(L_tcp))
    local C_ws = rm.connect("ws://127.0.0.1:" .. rm.port(L_ws) .. "/")
    local S_tcp, S_ws
    assert.truthy(rm.wait(function()
      local a = rm.find("ACCEPT", function(e) return e.parent == L_tcp end)
      local w = rm.find("WS_OPEN", function(e) return e.parent == L_ws end)
      S_tcp, S_ws = a and a.conn, w and w.conn
      return S_tcp and S_ws and rm.find("WS_OPEN", function(e) return e.conn == C_ws end)
    end))
    local forged = {}
    for _, target in ipairs({ { S_tcp, 0 }, { C_tcp, 0 }, { S_ws, 1 }, { C_ws, 2 } }) do
      for _, high in ipairs(HIGH) do
        local id = bit.bor(target[1], high[2])
        forged[tostring(id)] = true
        local r = C.wss_send_threadsafe(m, id, "HIJACK", 6, target[2])
        assert(r == 0 or r == R.NOT_FOUND, "wss_send_threadsafe: " .. rname(r))
      end
    end
    -- the real ones, last: once they arrive, anything queued before was handled
    assert.equal(0, C.wss_send_threadsafe(m, S_tcp, "real", 4, 0))
    assert.equal(0, C.wss_send_threadsafe(m, S_ws, "real", 4, 1))
    assert.truthy(rm.wait(function() return rm.received(C_tcp):find("real") and rm.received(C_ws):find("real") end))
    rm.pump(20)
    assert.equal("real", rm.received(C_tcp))
    assert.equal("real", rm.received(C_ws))
    assert.equal("", rm.received(S_tcp))
    assert.equal("", rm.received(S_ws))
    -- The failures are ERROR events under the id as it was passed (there is no stored
    -- one), never events of a live connection.
    local errors = 0
    for _, e in ipairs(rm.events) do
      assert(e.kind ~= EV.CLOSE, "a CLOSE of " .. tostring(e.conn))
      if e.kind == EV.ERROR and forged[tostring(e.conn)] then
        errors = errors + 1
        assert.equal(0ULL, e.parent)
      else
        assert(e.conn < TWO53 and e.parent < TWO53, e.name .. " with conn " .. tostring(e.conn) .. ", parent " .. tostring(e.parent))
      end
    end
    assert.equal(4 * #HIGH, errors)
  end)
end)

---------------------------------------------------------------------------------------
-- Ids: LibMongoose

describe("hostile ids through LibMongoose", function()
  local mgr
  before_each(function() mgr = assert(lm.new()) end)
  after_each(function() mgr:close() end)

  -- A listener, a client and the accepted connection, with every event of the live
  -- objects recorded as "name id".
  local function pair(log)
    local accepted
    local function rec(name) return function(c) log[#log + 1] = name .. " " .. c.id end end
    local l = assert(mgr:listen("tcp://127.0.0.1:0", {
      accept = function(c) accepted = c end, read = function(c, d) log[#log + 1] = "read " .. c.id .. " " .. d end,
      close = rec("close"), error = function(c, msg) log[#log + 1] = "error " .. c.id .. " " .. tostring(msg) end,
    }))
    local c = assert(mgr:connect("tcp://127.0.0.1:" .. l:port(), {
      read = function(x, d) log[#log + 1] = "read " .. x.id .. " " .. d end,
      close = rec("close"), error = function(x, msg) log[#log + 1] = "error " .. x.id .. " " .. tostring(msg) end,
    }))
    assert.truthy(H.run_until(mgr, function() return accepted end))
    return l, c, accepted
  end

  it("mgr:wakeup refuses ids that are not integers in [0, 2^53) and passes the others through untouched", function()
    local log = {}
    local _, c = pair(log)
    local got = {}
    mgr:on("wakeup", function(id, data) got[#got + 1] = { id, data } end)
    for _, v in ipairs({ 2 ^ 53, 2 ^ 60, 2 ^ 63, 2 ^ 64, 1e300, -1, -2 ^ 53, 0.5, c.id + 0.5, 0 / 0, math.huge, -math.huge }) do
      misuse({ "wakeup: bad argument 'id'", "expected, got " }, function() mgr:wakeup(v, "x") end,
        "wakeup(" .. tostring(v) .. ")")
      if v == v and v ~= math.huge and v ~= -math.huge then
        misuse({ "wakeup: bad argument 'id' (integer in [0, 2^53) expected, got " }, function() mgr:wakeup(v) end)
      end
    end
    for _, v in ipairs({ "1", true, {}, c }) do
      misuse({ "wakeup: bad argument 'id'" }, function() mgr:wakeup(v, "x") end, "wakeup(" .. type(v) .. ")")
    end
    -- in range: passed through as numbers, the live connection untouched
    assert.is_true(mgr:wakeup(c.id, "live"))
    assert.is_true(mgr:wakeup(2 ^ 53 - 1, "top"))
    assert.is_true(lm.wakeup(mgr, nil, "none"))
    assert.truthy(H.run_until(mgr, function() return #got == 3 end))
    assert.same({ { c.id, "live" }, { 2 ^ 53 - 1, "top" }, { 0, "none" } }, got)
    H.run_for(mgr, 20)
    assert.same({}, log)
    assert.is_false(c.closed)
  end)

  it("a forged id given to the C functions reaches no live object; the real close still reaches its handler", function()
    local log = {}
    local l, c, accepted = pair(log)
    local p = mgr._p
    local fired = 0
    local t = assert(mgr:timer(30, function() fired = fired + 1 end))
    for _, high in ipairs(HIGH) do
      local label = high[1]
      assert.equal(R.NOT_FOUND, lm.C.wss_conn_close(p, bit.bor(u64(l.id), high[2]), false), "close listener " .. label)
      assert.equal(R.NOT_FOUND, lm.C.wss_conn_close(p, bit.bor(u64(c.id), high[2]), false), "close conn " .. label)
      assert.equal(R.NOT_FOUND, lm.C.wss_conn_send(p, bit.bor(u64(accepted.id), high[2]), "HIJACK", 6), "send " .. label)
      assert.equal(R.NOT_FOUND, lm.C.wss_timer_cancel(p, bit.bor(u64(t.id), high[2])), "cancel " .. label)
      -- a thread-safe send under a forged id: an error event, not a send
      assert.equal(0, lm.C.wss_send_threadsafe(p, bit.bor(u64(c.id), high[2]), "HIJACK", 6, 0))
    end
    assert(c:send("real"))
    assert.truthy(H.run_until(mgr, function() return fired == 1 and #log > 0 end))
    H.run_for(mgr, 30)
    -- the errors of the forged sends went to stand-ins, not to the live connection
    for _, line in ipairs(log) do
      assert(not line:find("HIJACK") and not line:find("^close") and not line:find("^error " .. c.id),
        "a live object was reached: " .. line)
    end
    assert.same({ "read " .. accepted.id .. " real" }, log)
    assert.is_false(l.closed)
    assert.is_false(c.closed)
    assert.equal(1, fired)
    -- the listener still accepts, and closing it for real reaches its close handler
    local second
    l:on("accept", function(x) second = x end)
    local c2 = assert(mgr:connect("tcp://127.0.0.1:" .. l:port()))
    assert.truthy(H.run_until(mgr, function() return second end))
    c2:close()
    assert.is_true(l:close())
    assert.truthy(H.run_until(mgr, function() return l.closed end))
    local closes = 0
    for _, line in ipairs(log) do if line == "close " .. l.id then closes = closes + 1 end end
    assert.equal(1, closes)
  end)
end)

---------------------------------------------------------------------------------------
-- Far timers

local FAR = {
  { "UINT64_MAX", 0xFFFFFFFFFFFFFFFFULL },
  { "UINT64_MAX - 1000", 0xFFFFFFFFFFFFFC17ULL },
  { "2^63", 0x8000000000000000ULL },
  { "2^63 - 1", 0x7FFFFFFFFFFFFFFFULL },
  { "2^62", 0x4000000000000000ULL },
  { "2^53", TWO53 },
}

describe("far timers", function()
  it("wss_mgr_next_timeout_ms stays positive for timers of UINT64_MAX, 2^63 and alike ms, and they do not fire", function()
    local bad = {}
    for _, far in ipairs(FAR) do
      local rm = raw_manager()
      local id = ffi.new("wss_id[1]")
      assert.equal(0, C.wss_timer_add(rm.m, far[2], false, id))
      local t0 = H.now()
      local first = C.wss_mgr_next_timeout_ms(rm.m)
      for _ = 1, 3 do rm.pump(20) end
      local later = C.wss_mgr_next_timeout_ms(rm.m)
      if first <= 0 or later <= 0 then
        bad[#bad + 1] = string.format("%s: next_timeout_ms %s, then %s", far[1], tostring(first), tostring(later))
      end
      if #rm.events > 0 then bad[#bad + 1] = far[1] .. ": an event: " .. rm.events[1].name end
      if H.now() - t0 > 1000 then bad[#bad + 1] = far[1] .. ": polls of 20 ms took " .. (H.now() - t0) .. " ms" end
      -- a repeating one too; and the timer is still there to cancel
      local rid = ffi.new("wss_id[1]")
      assert.equal(0, C.wss_timer_add(rm.m, far[2], true, rid))
      rm.pump(0)
      local rep = C.wss_mgr_next_timeout_ms(rm.m)
      if rep <= 0 then bad[#bad + 1] = string.format("%s repeating: next_timeout_ms %s", far[1], tostring(rep)) end
      assert.equal(0, C.wss_timer_cancel(rm.m, id[0]))
      assert.equal(0, C.wss_timer_cancel(rm.m, rid[0]))
      assert.equal(-1LL, C.wss_mgr_next_timeout_ms(rm.m)) -- nothing scheduled now
      C.wss_mgr_free(ffi.gc(rm.m, nil))
    end
    assert(#bad == 0, "\n" .. table.concat(bad, "\n"))
  end)

  it("mgr:next_timeout() is a positive number beside far timers alone, and a near timer still wins", function()
    local id = ffi.new("wss_id[1]")
    for _, far in ipairs(FAR) do
      local mgr = assert(lm.new())
      assert.equal(0, lm.C.wss_timer_add(mgr._p, far[2], false, id))
      assert(mgr:poll(0))
      local n = mgr:next_timeout()
      assert(type(n) == "number" and n > 0, far[1] .. ": next_timeout() = " .. tostring(n))
      mgr:close()
    end
    -- the farthest timer LibMongoose takes, then far ones the program added through
    -- the thin binding, then a near one
    local mgr = assert(lm.new())
    local t = assert(mgr:timer(2 ^ 53 - 1))
    misuse({ "timer: bad argument 'ms'" }, function() mgr:timer(2 ^ 53) end)
    misuse({ "timer: bad argument 'ms'" }, function() mgr:timer(1e300) end)
    assert(mgr:poll(0))
    local n = mgr:next_timeout()
    assert(type(n) == "number" and n > 0, "timer(2^53 - 1): next_timeout() = " .. tostring(n))
    for _, far in ipairs(FAR) do assert.equal(0, lm.C.wss_timer_add(mgr._p, far[2], true, id)) end
    assert(mgr:poll(0))
    n = mgr:next_timeout()
    assert(type(n) == "number" and n > 0, "next_timeout() = " .. tostring(n))
    local fired = false
    assert(mgr:timer(40, function() fired = true end))
    n = mgr:next_timeout()
    assert(type(n) == "number" and n > 0 and n <= 40, "next_timeout() = " .. tostring(n))
    assert.truthy(H.run_until(mgr, function() return fired end, 2000))
    assert.is_true(t.active)
    mgr:close()
  end)

  -- Runs the luv loop until done() or `ms`; returns the loop iterations (a check
  -- handle runs once per iteration), the CPU and the wall time it took.
  local function run_loop(ms, done)
    uv.update_time() -- the loop's clock is stale until it runs: timers would be due at once
    local iterations = 0
    local check = uv.new_check()
    check:start(function() iterations = iterations + 1 end)
    local guard = uv.new_timer()
    guard:start(ms, 0, function() uv.stop() end)
    local poll
    if done then
      poll = uv.new_timer()
      poll:start(5, 5, function() if done() then uv.stop() end end)
    end
    local cpu0, t0 = H.cpu_ms(), H.now()
    uv.run()
    local cpu, wall = H.cpu_ms() - cpu0, H.now() - t0
    check:close(); guard:close()
    if poll then poll:close() end
    uv.run("nowait") -- let the closes complete
    return iterations, cpu, wall
  end

  for _, mode in ipairs({ "fd", "timer" }) do
    it("a luv attachment (" .. mode .. ") beside far timers neither spins nor fires, and still serves", function()
      local mgr = assert(lm.new())
      local fired = 0
      mgr:on("timer", function() fired = fired + 1 end)
      local id = ffi.new("wss_id[1]")
      assert.equal(0, lm.C.wss_timer_add(mgr._p, 0xFFFFFFFFFFFFFFFFULL, false, id))
      assert.equal(0, lm.C.wss_timer_add(mgr._p, 0xFFFFFFFFFFFFFC17ULL, true, id))
      local l = assert(mgr:listen("tcp://127.0.0.1:0", { read = function(c, d) c:send(d) end }))
      assert(mgr:poll(0)) -- the LISTEN event: nothing waits now
      local a = assert(mgr:attach(uv, { mode = mode, interval = 10 }))
      local sample = uv.new_timer()
      finally(function()
        if not sample:is_closing() then sample:close() end
        a:detach()
        mgr:close()
        uv.run("nowait")
      end)
      -- idle but for the far timers: what the loop and next_timeout() do for 300 ms
      local timeouts = {}
      uv.update_time()
      sample:start(50, 50, function()
        local v = "closed"
        if mgr._p then v = mgr:next_timeout() end
        timeouts[#timeouts + 1] = v == nil and "nil" or v
      end)
      local iterations, cpu, wall = run_loop(300)
      sample:close()
      uv.run("nowait")
      -- then one echo through the attachment
      local echoed
      local c = assert(mgr:connect("tcp://127.0.0.1:" .. l:port(), {
        connect = function(c) c:send("ping") end,
        read = function(_, d) echoed = d end,
      }))
      run_loop(3000, function() return echoed end)
      c:close()
      assert.equal("ping", echoed)
      assert.equal(0, fired)
      assert(wall < 2000, "the loop ran " .. wall .. " ms")
      -- fd mode sleeps until the guard; timer mode wakes every 10 ms: ~30 iterations
      assert(iterations < 100, iterations .. " loop iterations in " .. wall .. " ms")
      assert(cpu < 150, cpu .. " ms of CPU in " .. wall .. " ms")
      assert(#timeouts >= 3, #timeouts .. " samples")
      for _, v in ipairs(timeouts) do
        assert(type(v) == "number" and v > 0, "next_timeout() = " .. tostring(v) .. " while attached")
      end
    end)
  end
end)
