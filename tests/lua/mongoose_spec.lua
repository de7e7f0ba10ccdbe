-- The thin binding's contract: { bindings, events, results, cdefs, path }, the library
-- lookup order, cdefs generated from the same source as the header (no drift), and a
-- second load that does not redefine the types.
local H = require("helpers")
local mg = require("mongoose")
local ffi = require("ffi")

local header = H.read_file(H.root .. "/include/wsserver.h")

describe("mongoose.lua", function()
  it("returns bindings, events, results, cdefs and path", function()
    assert.equal("userdata", type(mg.bindings))
    assert.equal("string", type(mg.cdefs))
    assert.equal(require("wsserver_cdefs"), mg.cdefs)
    assert.equal("table", type(mg.events))
    assert.equal("table", type(mg.results))
    assert.is_string(mg.path)
    assert.equal("0.1.0", ffi.string(mg.bindings.wss_version()):match("^%d+%.%d+%.%d+"))
  end)

  it("maps every event id to its name and back, from the header's enum", function()
    local n = 0
    for name, value in header:match("enum wss_event_kind.-{(.-)}"):gmatch("WSS_EV_([%w_]+) = (%d+)") do
      value = tonumber(value)
      assert.equal(name, mg.events[value])
      assert.equal(value, mg.events[name])
      n = n + 1
    end
    assert.is_true(n >= 15)
    assert.equal("HTTP_MSG", mg.events[5])
    assert.equal(7, mg.events.WS_MSG)
    for name, value in header:match("enum wss_result.-{(.-)}"):gmatch("WSS_RESULT_([%w_]+) = (%d+)") do
      assert.equal(name, mg.results[tonumber(value)])
    end
  end)

  it("reads flags, opcodes and WSS_NO_TIMEOUT from the declarations, as the header has them", function()
    for _, e in ipairs({ { "wss_flag", "WSS_FLAG_", "flags" }, { "wss_opcode", "WSS_OP_", "opcodes" } }) do
      local enum, prefix, field = e[1], e[2], e[3]
      local n = 0
      for name, value in header:match("enum " .. enum .. ".-{(.-)}"):gmatch(prefix .. "([%w_]+) = (%d+)") do
        value = tonumber(value)
        assert.equal(name, mg[field][value])
        assert.equal(value, mg[field][name])
        n = n + 1
      end
      assert.is_true(n >= 5)
    end
    assert.equal(2, mg.flags.BINARY)
    assert.equal(9, mg.opcodes.PING)
    assert.equal("UINT32_MAX", header:match("#define WSS_NO_TIMEOUT ([%w_]+)"))
    assert.equal(0xFFFFFFFF, mg.NO_TIMEOUT)
  end)

  it("declares exactly the header's functions (the cdefs are generated, not hand-kept)", function()
    local function names(text)
      local t = {}
      for name in text:gmatch("[%w_%*]+%s+%**(wss_[%w_]+)%s*%(") do t[name] = true end
      return t
    end
    local h, c = names(header), names(mg.cdefs)
    assert.is_not_nil(next(h))
    assert.same(h, c)
    -- every declared function resolves in the loaded library
    for name in pairs(c) do
      assert(pcall(function() return mg.bindings[name] end), name .. " missing from the library")
    end
  end)

  it("lays out every struct as the C compiler does (sizeof and offsetof, as ljsyscall's ctest)", function()
    local structs = {}
    for name, body in mg.cdefs:gmatch("typedef struct ([%w_]+) {(.-)} [%w_]+;") do
      local fields = {}
      for field in body:gmatch("([%w_]+);") do fields[#fields + 1] = field end
      structs[#structs + 1] = { name = name, fields = fields }
    end
    assert.is_true(#structs >= 8)
    local c, want = { "#include <stdio.h>", "#include <stddef.h>", '#include "wsserver.h"', "int main(void) {" }, {}
    for _, st in ipairs(structs) do
      c[#c + 1] = string.format('  printf("%s %%zu\\n", sizeof(%s));', st.name, st.name)
      want[#want + 1] = string.format("%s %d", st.name, ffi.sizeof(st.name))
      for _, f in ipairs(st.fields) do
        c[#c + 1] = string.format('  printf("%s.%s %%zu\\n", offsetof(%s, %s));', st.name, f, st.name, f)
        want[#want + 1] = string.format("%s.%s %d", st.name, f, ffi.offsetof(st.name, f))
      end
    end
    c[#c + 1] = "  return 0;\n}"
    local src = H.write_file(H.tmpdir() .. "/ctest.c", table.concat(c, "\n"))
    local exe = H.tmpdir() .. "/ctest"
    assert.equal(0, os.execute(string.format("cc -std=c11 -I%s/include -o %s %s", H.root, exe, src)))
    local p = io.popen(exe)
    local got = p:read("*a")
    p:close()
    assert.equal(table.concat(want, "\n") .. "\n", got)
  end)

  it("guards the cdef against a second load", function()
    package.loaded.mongoose = nil
    local again = require("mongoose")
    assert.equal(mg.cdefs, again.cdefs)
    package.loaded.mongoose = mg
  end)

  it("finds the library through WSSERVER_LIB, and reports what it tried", function()
    local lib = H.tmpdir() .. "/copy-libwsserver.so"
    assert(os.execute("cp " .. H.shell_quote(mg.path) .. " " .. H.shell_quote(lib)) == 0)
    local lua = string.format("package.path=%q .. package.path; io.write(require('mongoose').path)", H.root .. "/lua/?.lua;")
    local p = io.popen("WSSERVER_LIB=" .. H.shell_quote(lib) .. " luajit -e " .. H.shell_quote(lua) .. " 2>&1")
    local out = p:read("*a")
    p:close()
    assert.equal(lib, out)
    -- a bad WSSERVER_LIB falls through to the next candidates
    p = io.popen("WSSERVER_LIB=/nonexistent/libwsserver.so luajit -e " .. H.shell_quote(lua) .. " 2>&1")
    out = p:read("*a")
    p:close()
    assert.matches("libwsserver%.so$", out)
    -- a copy of the module with no library anywhere near: the error lists the candidates
    local d = H.tmpdir() .. "/lonely"
    os.execute("mkdir -p " .. d .. " && cp " .. H.root .. "/lua/mongoose.lua " .. H.root .. "/lua/wsserver_cdefs.lua " .. d)
    lua = string.format("package.path=%q; package.cpath=''; require('mongoose')", d .. "/?.lua")
    p = io.popen("WSSERVER_LIB=/nonexistent/x.so LD_LIBRARY_PATH=/nonexistent luajit -e " .. H.shell_quote(lua) .. " 2>&1")
    out = p:read("*a")
    p:close()
    assert.matches("cannot load libwsserver; tried:", out)
    assert.matches("/nonexistent/x%.so %(missing%)", out)
  end)
end)
