-- Documentation coverage, in the spirit of luv's docscov.sh: every public function of
-- LibMongoose must have a heading in docs/lua-api.md, every method of a manager,
-- connection, timer or attachment its plain-function heading and a "method form" line,
-- and every handler name a row in the handlers table.
--   luajit tests/lua/docscov.lua      prints "docs: N passed, M failed"
local here = (arg[0]:match("^(.*)/[^/]*$")) or "."
package.path = here .. "/../../lua/?.lua;" .. package.path
local lm = require("LibMongoose")

local f = assert(io.open(here .. "/../../docs/lua-api.md", "rb"))
local doc = f:read("*a")
f:close()

local passed, failed = 0, 0
local function check(ok, what)
  if ok then passed = passed + 1 else failed = failed + 1; print("undocumented: " .. what) end
end
local function has(s) return doc:find(s, 1, true) ~= nil end

-- Module functions and the plain forms of methods: "### lm.NAME("
local names = {}
for name, v in pairs(lm) do
  if type(v) == "function" then names[#names + 1] = name end
end
table.sort(names)
for _, name in ipairs(names) do check(has("\n### lm." .. name .. "("), "lm." .. name) end

-- Methods of the classes with plain forms: a "> method form ...:NAME(" line too.
for cls, var in pairs({ [lm.Manager] = "mgr", [lm.Connection] = "conn", [lm.Timer] = "timer",
                        [lm.Attachment] = "attachment" }) do
  for name, v in pairs(cls) do
    if type(v) == "function" and not name:match("^_") then
      local found = false
      for line in doc:gmatch("\n> method form ([^\n]*)") do
        if line:find(":" .. name .. "(", 1, true) then found = true end
      end
      check(found, var .. ":" .. name .. " (method form line)")
    end
  end
end

-- Request, response and router methods: "### req:NAME(", "### res:NAME(", "### app:NAME("
for cls, var in pairs({ [lm.Request] = "req", [lm.Response] = "res", [lm.Router] = "app" }) do
  for name, v in pairs(cls) do
    if type(v) == "function" and not name:match("^_") then
      check(has("\n### " .. var .. ":" .. name .. "("), var .. ":" .. name)
    end
  end
end

-- Handlers: a row of the handlers table.
for _, name in ipairs(lm.HANDLERS) do check(has("\n| `" .. name .. "` |"), "handler " .. name) end

-- Constants and fields listed.
for _, name in ipairs({ "NO_TIMEOUT", "HAS_WS", "EVENTS", "RESULTS", "HANDLERS", "C" }) do
  check(has("`lm." .. name .. "`"), "lm." .. name)
end

print(string.format("docs: %d passed, %d failed", passed, failed))
os.exit(failed == 0 and 0 or 1)
