-- luarocks make (from a checkout): builds libwsserver with cargo and installs it with the
-- LuaJIT modules. Lua code finds the library next to its rocks tree (lib/lua/5.1).
--
--   luarocks --lua-version=5.1 make --tree=./rocks wsserver-scm-1.rockspec
rockspec_format = "3.0"
package = "wsserver"
version = "scm-1"

source = {
  url = "git+https://example.invalid/libwsserver.git",
}

description = {
  summary = "Fast, memory-safe HTTP/1.1 + WebSocket server library (Rust) with LuaJIT bindings",
  detailed = [[
libwsserver is an HTTP/1.1 and WebSocket server library written in Rust and shipped as a
C-ABI shared library. This rock installs the library and its LuaJIT modules:
`mongoose` (the thin FFI binding) and `LibMongoose` (managers, connections, an
Express-like router, WebSocket, TLS, timers, libuv interop, utilities).
]],
  license = "MIT",
  labels = { "http", "websocket", "server", "luajit", "ffi", "libuv" },
}

-- LuaJIT (Lua 5.1 API). lua-cjson is optional: res:json()/req:json() need it, and it is
-- usually a system package (Debian: lua-cjson); luv is optional too (mgr:attach).
dependencies = {
  "lua == 5.1",
}

build = {
  type = "command",
  -- luarocks exports CC, which would make cargo rebuild the C parts of ring for the
  -- rock and again for the next plain build: build exactly as `cargo build` does.
  build_command = "env -u CC cargo build --release --locked",
  install = {
    lua = {
      ["mongoose"] = "lua/mongoose.lua",
      ["LibMongoose"] = "lua/LibMongoose.lua",
      ["LibMongoose.base"] = "lua/LibMongoose/base.lua",
      ["LibMongoose.options"] = "lua/LibMongoose/options.lua",
      ["LibMongoose.util"] = "lua/LibMongoose/util.lua",
      ["LibMongoose.event"] = "lua/LibMongoose/event.lua",
      ["LibMongoose.core"] = "lua/LibMongoose/core.lua",
      ["LibMongoose.http"] = "lua/LibMongoose/http.lua",
      ["LibMongoose.ws"] = "lua/LibMongoose/ws.lua",
      ["LibMongoose.router"] = "lua/LibMongoose/router.lua",
      ["LibMongoose.luv"] = "lua/LibMongoose/luv.lua",
      ["wsserver_cdefs"] = "lua/wsserver_cdefs.lua",
    },
    lib = {
      ["libwsserver"] = "target/release/libwsserver.so",
    },
  },
  copy_directories = { "docs", "examples" },
}
