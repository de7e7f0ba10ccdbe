-- The Express-like router: routes and params, query, headers, bodies, JSON, middleware
-- with next(), mounted routers, static files, 404 and error handlers.
local H = require("helpers")
local lm = H.lm
local cjson = require("cjson")
local _ -- the ignored values of multiple assignments below

describe("router", function()
  local mgr, port, app, log

  local function url(path) return string.format("'http://127.0.0.1:%d%s'", port, path) end

  before_each(function()
    mgr = assert(lm.new())
    app = lm.router()
    log = {}
    app:use(function(req, res, nxt)
      log[#log + 1] = req.method .. " " .. req.path
      res:set("X-Powered-By", "LibMongoose")
      nxt()
    end)
    app:get("/users/:id", function(req, res)
      res:json({ id = req.params.id, q = req.query })
    end)
    app:get("/users/:id/books/:book", function(req, res)
      res:json(req.params)
    end)
    app:get("/files/*", function(req, res) res:text(req.params["*"]) end)
    app:post("/users", function(req, res)
      local body, err = req:json()
      if not body then return res:status(400):json({ error = err }) end
      body.created = true
      res:status(201):json(body)
    end)
    app:put("/users/:id", function(req, res) res:json({ put = req.params.id, body = req.body }) end)
    app:patch("/users/:id", function(req, res) res:json({ patch = req.params.id }) end)
    app:delete("/users/:id", function(req, res) res:status(204):send() end)
    app:all("/any", function(req, res) res:text("any " .. req.method) end)
    app:post("/form", function(req, res) res:json(req:form()) end)
    app:get("/headers", function(req, res)
      res:json({ accept = req.headers.accept, custom = req:header("x-CUSTOM") })
    end)
    -- several handlers in one route, passing control with next()
    app:get("/chain", function(req, _, nxt) req.data = { "a" }; nxt() end,
      function(req, _, nxt) req.data[#req.data + 1] = "b"; nxt() end,
      function(req, res) res:text(table.concat(req.data, "")) end)
    app:get("/boom", function() error("kaboom") end)
    app:get("/next-error", function(_, _, nxt) nxt("passed along") end)
    app:get("/async", function(_, res)
      mgr:timer(10, function() res:status(202):text("async done") end)
    end)
    local api = lm.router()
    api:get("/ping", function(req, res) res:json({ pong = true, base = req.base_path, path = req.path }) end)
    app:use("/api", api)
    local l = assert(mgr:listen("http://127.0.0.1:0", { http = app }))
    port = l:port()
  end)

  after_each(function() mgr:close() end)

  it("matches :param segments and decodes them", function()
    local st, h, body = H.curl(mgr, url("/users/42?x=1&y=a+b"))
    assert.equal(200, st)
    assert.equal("LibMongoose", h["x-powered-by"])
    assert.same({ id = "42", q = { x = "1", y = "a b" } }, cjson.decode(body))
    st, _, body = H.curl(mgr, url("/users/j%C3%B6rg%2Fx/books/7/"))
    assert.equal(200, st)
    assert.same({ id = "j\195\182rg/x", book = "7" }, cjson.decode(body))
    st, _, body = H.curl(mgr, url("/files/a/b/c.txt"))
    assert.same({ 200, "a/b/c.txt" }, { st, body })
  end)

  it("matches paths without parameters exactly, with an optional trailing slash", function()
    app:get("/", function(_, res) res:text("root") end)
    app:get("/v1.0/a+b", function(_, res) res:text("dots") end)
    app:get("/slash/", function(_, res) res:text("slash") end)
    app:get("/a//b", function(_, res) res:text("double") end)
    local cases = {
      { "/", 200, "root" }, { "/v1.0/a+b", 200, "dots" }, { "/v1.0/a+b/", 200, "dots" },
      -- "." and "+" are literal, not pattern characters
      { "/v1x0/a+b", 404 }, { "/v1.0/aab", 404 }, { "/v1.0/a+b//", 404 }, { "/v1.0/a+bc", 404 },
      { "/slash", 200, "slash" }, { "/slash/", 200, "slash" }, { "/slashx", 404 },
      { "/a//b", 200, "double" }, { "/a/b", 404 },
      -- the query is not part of the path
      { "/slash?x=/", 200, "slash" },
    }
    for _, c in ipairs(cases) do
      local st, _, body = H.request(mgr, port, "GET", c[1])
      assert.equal(c[2], st, c[1])
      if c[3] then assert.equal(c[3], body, c[1]) end
    end
  end)

  it("routes by method", function()
    local st, _, body = H.curl(mgr, "-X POST -H 'Content-Type: application/json' --data '{\"name\":\"ann\"}' " .. url("/users"))
    assert.equal(201, st)
    assert.same({ name = "ann", created = true }, cjson.decode(body))
    st, _, body = H.curl(mgr, "-X POST --data 'not json' " .. url("/users"))
    assert.equal(400, st)
    assert.matches("not JSON", cjson.decode(body).error)
    st, _, body = H.curl(mgr, "-X PUT --data 'b' " .. url("/users/3"))
    assert.same({ put = "3", body = "b" }, cjson.decode(body))
    st, _, body = H.curl(mgr, "-X PATCH " .. url("/users/4"))
    assert.same({ patch = "4" }, cjson.decode(body))
    st, _, body = H.curl(mgr, "-X DELETE " .. url("/users/5"))
    assert.same({ 204, "" }, { st, body })
    for _, m in ipairs({ "GET", "POST", "PUT", "DELETE" }) do
      st, _, body = H.curl(mgr, "-X " .. m .. " " .. url("/any"))
      assert.equal("any " .. m, body)
    end
    -- a route for GET answers HEAD too
    st = H.request(mgr, port, "HEAD", "/users/1")
    assert.equal(200, st)
    -- a route that exists for another method: 404
    st = H.curl(mgr, "-X POST " .. url("/users/1"))
    assert.equal(404, st)
  end)

  it("parses forms and headers", function()
    local st, _, body = H.curl(mgr, "--data 'a=1&b=two+words&b=x%26y' " .. url("/form"))
    assert.equal(200, st)
    assert.same({ a = "1", b = { "two words", "x&y" } }, cjson.decode(body))
    st, _, body = H.curl(mgr, "-H 'Accept: text/x-test' -H 'X-Custom: yes' " .. url("/headers"))
    assert.same({ accept = "text/x-test", custom = "yes" }, cjson.decode(body))
  end)

  it("runs middleware and chained handlers in order", function()
    local st, _, body = H.curl(mgr, url("/chain"))
    assert.same({ 200, "ab" }, { st, body })
    assert.same({ "GET /chain" }, log)
  end)

  it("mounts routers under a prefix", function()
    local st, _, body = H.curl(mgr, url("/api/ping"))
    assert.equal(200, st)
    assert.same({ pong = true, base = "/api", path = "/ping" }, cjson.decode(body))
    st = H.curl(mgr, url("/api/nothing"))
    assert.equal(404, st)
    st = H.curl(mgr, url("/apix/ping"))
    assert.equal(404, st)
  end)

  it("answers asynchronously", function()
    local st, _, body = H.curl(mgr, url("/async"))
    assert.same({ 202, "async done" }, { st, body })
  end)

  it("has default 404 and 500 handlers", function()
    local st, _, body = H.curl(mgr, url("/nowhere"))
    assert.same({ 404, "Not Found\n" }, { st, body })
    -- the default error handler writes to stderr; keep the test output clean
    app:on_error(function(err, _, res) res:status(500):text("Internal Server Error\n") end)
    st, _, body = H.curl(mgr, url("/boom"))
    assert.same({ 500, "Internal Server Error\n" }, { st, body })
  end)

  it("calls custom 404 and error handlers", function()
    local errors = {}
    app:not_found(function(req, res) res:status(404):json({ missing = req.path }) end)
    app:on_error(function(err, req, res)
      errors[#errors + 1] = tostring(err)
      res:status(418):text("handled: " .. req.path)
    end)
    local st, _, body = H.curl(mgr, url("/nope"))
    assert.same({ 404, { missing = "/nope" } }, { st, cjson.decode(body) })
    st, _, body = H.curl(mgr, url("/boom"))
    assert.same({ 418, "handled: /boom" }, { st, body })
    assert.matches("kaboom", errors[1])
    st, _, body = H.curl(mgr, url("/next-error"))
    assert.same({ 418, "handled: /next-error" }, { st, body })
    assert.equal("passed along", errors[2])
  end)

  it("survives an error in the error handler", function()
    app:on_error(function() error("worse") end)
    local saved, written = io.stderr, {}
    io.stderr = { write = function(_, ...) for _, s in ipairs({ ... }) do written[#written + 1] = s end end }
    local ok, st = pcall(H.curl, mgr, url("/boom"))
    io.stderr = saved
    assert.is_true(ok)
    assert.equal(500, st)
    assert.matches("error in the error handler.*worse", table.concat(written))
  end)

  it("serves static directories and falls through for missing files", function()
    local d = H.tmpdir() .. "/static"
    os.execute("mkdir -p " .. d .. "/css")
    H.write_file(d .. "/css/site.css", "body{}")
    H.write_file(d .. "/index.html", "<i>home</i>")
    H.write_file(d .. "/.secret", "no")
    local a2 = lm.router()
    a2:static("/static", d)
    a2:get("/static/dynamic", function(_, res) res:text("dynamic") end)
    a2:use(lm.static(d))
    local l = assert(mgr:listen("http://127.0.0.1:0", { http = a2 }))
    local p = l:port()
    local base = "http://127.0.0.1:" .. p
    local st, h, body = H.curl(mgr, base .. "/static/css/site.css")
    assert.same({ 200, "body{}" }, { st, body })
    assert.truthy(h["content-type"]:find("text/css", 1, true))
    assert.truthy(h["etag"])
    st, _, body = H.curl(mgr, base .. "/static/")
    assert.same({ 200, "<i>home</i>" }, { st, body })
    st, _, body = H.curl(mgr, base .. "/static/dynamic")
    assert.same({ 200, "dynamic" }, { st, body })
    st, _, body = H.curl(mgr, base .. "/css/site.css")
    assert.same({ 200, "body{}" }, { st, body })
    st = H.curl(mgr, base .. "/static/.secret")
    assert.equal(403, st)
    st = H.curl(mgr, "--path-as-is " .. base .. "/static/../../../etc/passwd")
    assert.equal(403, st)
    st = H.curl(mgr, base .. "/static/%2e%2e/%2e%2e/etc/passwd")
    assert.equal(403, st)
    st = H.curl(mgr, base .. "/static/missing.css")
    assert.equal(404, st)
    -- only GET and HEAD are served
    st = H.curl(mgr, "-X POST " .. base .. "/static/css/site.css")
    assert.equal(404, st)
  end)

  it("can be called directly and used as a manager-wide handler", function()
    local m2 = assert(lm.new({ http = app }))
    local l = assert(m2:listen("http://127.0.0.1:0"))
    local st, _, body = H.request(m2, l:port(), "GET", "/chain")
    assert.same({ 200, "ab" }, { st, body })
    m2:close()
  end)
end)
