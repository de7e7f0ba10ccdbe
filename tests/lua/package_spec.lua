-- The shape of the LibMongoose package: the modules listed in the head of
-- lua/LibMongoose.lua, in dependency order, are exactly the files of lua/LibMongoose/;
-- each requires only modules listed before it (no cycle), loads on its own, and stays
-- under 800 lines.
local H = require("helpers")

local facade = H.read_file(H.root .. "/lua/LibMongoose.lua")
local order, rank = {}, {}
for name in facade:gmatch("\n%-%-%s+LibMongoose%.(%w+) ") do
  order[#order + 1] = name
  rank[name] = #order
end

local function lines(text)
  local n = 0
  for _ in text:gmatch("[^\n]*\n") do n = n + 1 end
  return n
end

describe("the LibMongoose package", function()
  it("lists its modules in the façade's head, one per file of lua/LibMongoose/", function()
    assert.is_true(#order >= 5)
    local p = io.popen("ls " .. H.shell_quote(H.root .. "/lua/LibMongoose"))
    local files = {}
    for f in p:lines() do files[#files + 1] = f end
    p:close()
    local listed = {}
    for _, name in ipairs(order) do listed[#listed + 1] = name .. ".lua" end
    table.sort(files)
    table.sort(listed)
    assert.same(files, listed)
  end)

  it("has no require cycle: each module requires only modules listed before it", function()
    for _, name in ipairs(order) do
      local src = H.read_file(H.root .. "/lua/LibMongoose/" .. name .. ".lua")
      for dep in src:gmatch("require%(\"LibMongoose%.(%w+)\"%)") do
        assert(rank[dep] and rank[dep] < rank[name],
               string.format("LibMongoose.%s requires LibMongoose.%s, which is not listed before it", name, dep))
      end
    end
  end)

  it("keeps every file under 800 lines", function()
    local files = { H.root .. "/lua/LibMongoose.lua", H.root .. "/lua/mongoose.lua" }
    for _, name in ipairs(order) do files[#files + 1] = H.root .. "/lua/LibMongoose/" .. name .. ".lua" end
    for _, f in ipairs(files) do
      local n = lines(H.read_file(f))
      assert(n <= 800, f .. " has " .. n .. " lines")
    end
  end)

  it("loads each module on its own", function()
    for _, name in ipairs(order) do
      local script = H.script(string.format("require(%q); io.write('ok')", "LibMongoose." .. name))
      local p = io.popen("luajit " .. H.shell_quote(script) .. " 2>&1")
      local out = p:read("*a")
      p:close()
      assert.equal("ok", out, "LibMongoose." .. name)
    end
  end)
end)
