-- TLS options as plain tables: https with curl, mutual TLS, tls:// with the library's
-- own client and with openssl s_client, PEM text instead of paths, handshake failures.
local H = require("helpers")
local lm = H.lm

describe("tls", function()
  local mgr, certs
  setup(function() certs = H.certs() end)
  before_each(function() mgr = assert(lm.new()) end)
  after_each(function() mgr:close() end)

  it("serves https to curl", function()
    local info
    local l = assert(mgr:listen("https://127.0.0.1:0", {
      tls = { cert = certs.cert, key = certs.key },
      http = function(req, res)
        info = req.conn:tls_info()
        res:json({ secure = true, path = req.path })
      end,
    }))
    local st, h, body = H.curl(mgr, string.format("--cacert %s https://localhost:%d/x --resolve localhost:%d:127.0.0.1",
      certs.ca, l:port(), l:port()))
    assert.equal(200, st)
    assert.same({ secure = true, path = "/x" }, require("cjson").decode(body))
    assert.equal("application/json", h["content-type"])
    assert.matches("^TLSv1%.[23]$", info.version)
    assert.is_string(info.cipher)
    assert.equal("localhost", info.sni)
    assert.is_nil(info.peer_identity)
  end)

  it("accepts PEM text as well as paths", function()
    local l = assert(mgr:listen("https://127.0.0.1:0", {
      tls = { cert = H.read_file(certs.cert), key = H.read_file(certs.key) },
      http = function(_, res) res:text("pem ok") end,
    }))
    local st, _, body = H.curl(mgr, string.format("--cacert %s https://127.0.0.1:%d/", certs.ca, l:port()))
    assert.same({ 200, "pem ok" }, { st, body })
  end)

  it("requires client certificates with a client CA (mutual TLS)", function()
    local who
    local l = assert(mgr:listen("https://127.0.0.1:0", {
      tls = { cert = certs.cert, key = certs.key, ca = certs.ca },
      http = function(req, res)
        who = req.conn:tls_info().peer_identity
        res:text("hello " .. who)
      end,
    }))
    local url = string.format("https://127.0.0.1:%d/", l:port())
    local st, _, body = H.curl(mgr, string.format("--cacert %s --cert %s --key %s %s", certs.ca, certs.client_cert,
      certs.client_key, url))
    assert.equal(200, st)
    assert.matches("CN=alice", who)
    assert.matches("^hello ", body)
    -- without a client certificate the handshake fails
    local st2, _, _, p = H.curl(mgr, string.format("--cacert %s %s", certs.ca, url))
    assert.is_nil(st2)
    assert.are_not.equal(0, p.rc)
  end)

  it("lets clients without certificates in when verify is optional", function()
    local l = assert(mgr:listen("https://127.0.0.1:0", {
      tls = { cert = certs.cert, key = certs.key, ca = certs.ca, verify = "optional" },
      http = function(req, res) res:text(req.conn:tls_info().peer_identity or "anonymous") end,
    }))
    local st, _, body = H.curl(mgr, string.format("--cacert %s https://127.0.0.1:%d/", certs.ca, l:port()))
    assert.same({ 200, "anonymous" }, { st, body })
  end)

  it("connects the library's tls:// client to a tls:// listener", function()
    local server_got, client_got, ready = {}, {}, {}
    local l = assert(mgr:listen("tls://127.0.0.1:0", {
      tls = { cert = certs.cert, key = certs.key },
      tls_ready = function() ready.server = true end,
      read = function(c, d) server_got[#server_got + 1] = d; c:send("re:" .. d) end,
    }))
    local c = assert(mgr:connect("tls://localhost:" .. l:port(), {
      tls = { ca = certs.ca },
      tls_ready = function(c) ready.client = c:tls_info() end,
      connect = function(c) c:send("secret") end,
      read = function(_, d) client_got[#client_got + 1] = d end,
    }))
    assert.is_true(H.run_until(mgr, function() return table.concat(client_got) == "re:secret" end))
    assert.equal("secret", table.concat(server_got))
    assert.is_true(ready.server)
    assert.matches("CN=localhost", ready.client.peer_identity)
    c:close()
  end)

  it("fails the handshake of a client that does not trust the server, as events", function()
    local events = {}
    local l = assert(mgr:listen("tls://127.0.0.1:0", { tls = { cert = certs.cert, key = certs.key } }))
    assert(mgr:connect("tls://localhost:" .. l:port(), {
      connect = function() events[#events + 1] = "connect" end,
      error = function(_, msg) events[#events + 1] = "error"; events.msg = msg end,
      close = function() events[#events + 1] = "close" end,
    }))
    assert.is_true(H.run_until(mgr, function() return events[#events] == "close" end))
    assert.truthy(table.concat(events, " "):find("error", 1, true))
    assert.is_string(events.msg)
    -- with verify = false the same client gets through
    local ok = false
    assert(mgr:connect("tls://localhost:" .. l:port(), {
      tls = { verify = false },
      tls_ready = function() ok = true end,
    }))
    assert.is_true(H.run_until(mgr, function() return ok end))
  end)

  it("talks to openssl s_client", function()
    local l = assert(mgr:listen("tls://127.0.0.1:0", {
      tls = { cert = certs.cert, key = certs.key },
      read = function(c, d) c:send("echo:" .. d); c:close() end,
    }))
    local p = H.run_cmd(mgr, string.format(
      "openssl s_client -quiet -CAfile %s -verify_return_error -servername localhost -connect 127.0.0.1:%d",
      certs.ca, l:port()), 10000, "ping-over-tls\n")
    assert.matches("echo:ping%-over%-tls", p.out)
  end)

  it("chooses a certificate by SNI from tls.sni", function()
    local l = assert(mgr:listen("https://127.0.0.1:0", {
      tls = { cert = certs.cert, key = certs.key,
              sni = { { cert = certs.other_cert, key = H.read_file(certs.other_key) } } },
      http = function(req, res) res:text("sni=" .. tostring(req.conn:tls_info().sni)) end,
    }))
    collectgarbage() -- the option strings and the certificate array must not be needed any more
    local port = l:port()
    local st, _, body = H.curl(mgr, string.format("--cacert %s --resolve other.test:%d:127.0.0.1 https://other.test:%d/",
      certs.ca, port, port))
    assert.same({ 200, "sni=other.test" }, { st, body })
    st, _, body = H.curl(mgr, string.format("--cacert %s --resolve localhost:%d:127.0.0.1 https://localhost:%d/",
      certs.ca, port, port))
    assert.same({ 200, "sni=localhost" }, { st, body })
  end)

  it("returns nil, err for a bad key or certificate", function()
    local v, err, name = mgr:listen("https://127.0.0.1:0", { tls = { cert = certs.cert, key = certs.client_key } })
    assert.is_nil(v)
    assert.equal("TLS_CONFIG", name)
    assert.matches("^TLS_CONFIG: ", err)
    v, err, name = mgr:listen("tls://127.0.0.1:0", { tls = { cert = "-----BEGIN CERTIFICATE-----\nxx\n-----END CERTIFICATE-----\n", key = certs.key } })
    assert.is_nil(v)
    assert.equal("TLS_CONFIG", name)
  end)
end)
