-- rest.lua: a JSON API with the router: an in-memory list of todos.
--
--   luajit examples/rest.lua PORT
--
--   curl http://127.0.0.1:PORT/todos
--   curl -d '{"title":"write docs"}' http://127.0.0.1:PORT/todos
--   curl -X PATCH -d '{"done":true}' http://127.0.0.1:PORT/todos/1
--   curl -X DELETE http://127.0.0.1:PORT/todos/1
local dir = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = dir .. "/../lua/?.lua;" .. package.path
local lm = require("LibMongoose")
local cjson = require("cjson")

local port = tonumber(arg[1])
if not port then
  io.stderr:write("usage: luajit examples/rest.lua PORT\n")
  os.exit(2)
end

local todos, order, next_id = {}, {}, 1

local app = lm.router()

-- Middleware: a log line per request, then on to the routes.
app:use(function(req, _, nxt)
  io.stderr:write(req.method, " ", req.target, "\n")
  nxt()
end)

-- Middleware for bodies: parse JSON once, answer 400 for anything else.
local function json_body(req, res, nxt)
  local body, err = req:json()
  if type(body) ~= "table" then
    return res:status(400):json({ error = err or "a JSON object is expected" })
  end
  req.data = body
  nxt()
end

-- Route middleware: find the todo named by :id, or 404.
local function find_todo(req, res, nxt)
  local todo = todos[tonumber(req.params.id)]
  if not todo then return res:status(404):json({ error = "no todo " .. req.params.id }) end
  req.todo = todo
  nxt()
end

app:get("/todos", function(_, res)
  local list = {}
  for _, id in ipairs(order) do
    if todos[id] then list[#list + 1] = todos[id] end
  end
  res:json(setmetatable(list, cjson.array_mt))
end)

app:post("/todos", json_body, function(req, res)
  if type(req.data.title) ~= "string" then return res:status(400):json({ error = "title is required" }) end
  local todo = { id = next_id, title = req.data.title, done = false }
  todos[next_id], order[#order + 1], next_id = todo, next_id, next_id + 1
  res:status(201):set("Location", "/todos/" .. todo.id):json(todo)
end)

app:get("/todos/:id", find_todo, function(req, res) res:json(req.todo) end)

app:patch("/todos/:id", find_todo, json_body, function(req, res)
  if req.data.title ~= nil then req.todo.title = tostring(req.data.title) end
  if req.data.done ~= nil then req.todo.done = req.data.done == true end
  res:json(req.todo)
end)

app:delete("/todos/:id", find_todo, function(req, res)
  todos[req.todo.id] = nil
  res:status(204):send()
end)

app:not_found(function(req, res) res:status(404):json({ error = "not found: " .. req.path }) end)
app:on_error(function(err, _, res)
  io.stderr:write("error: ", tostring(err), "\n")
  res:status(500):json({ error = "internal error" })
end)

local mgr = assert(lm.new())
local listener, err = mgr:listen("http://127.0.0.1:" .. port, { http = app })
if not listener then
  io.stderr:write("rest.lua: ", err, "\n")
  os.exit(1)
end
print(string.format("rest.lua listening on http://127.0.0.1:%d", listener:port()))
io.stdout:flush()
mgr:run()
