-- A raw TCP client over LuaJIT's FFI (IPv4, 127.0.0.1), for tests that need what the
-- library's own client does not do on purpose: a reset (SO_LINGER 0), a half-close,
-- a peer that stops reading. Connect is blocking (the listener's backlog accepts it);
-- reads after it do not block.
local ffi = require("ffi")
local bit = require("bit")

if not pcall(ffi.typeof, "struct lmtest_sockaddr_in") then
  ffi.cdef([[
    struct lmtest_sockaddr_in { uint16_t family; uint16_t port; uint32_t addr; uint8_t zero[8]; };
    struct lmtest_linger { int onoff; int linger; };
    int socket(int domain, int type, int protocol);
    int connect(int fd, const void *addr, uint32_t len);
    int setsockopt(int fd, int level, int name, const void *val, uint32_t len);
    long send(int fd, const void *buf, size_t len, int flags);
    long recv(int fd, void *buf, size_t len, int flags);
    int shutdown(int fd, int how);
    int close(int fd);
  ]])
end

local AF_INET, SOCK_STREAM = 2, 1
local SOL_SOCKET, SO_LINGER, SO_RCVBUF = 1, 13, 8
local MSG_DONTWAIT, MSG_NOSIGNAL = 0x40, 0x4000


local S = {}

local function htons(n) return bit.bor(bit.lshift(bit.band(n, 0xff), 8), bit.rshift(n, 8)) end

--- Connects to 127.0.0.1:port; returns the fd. `rcvbuf`: optional receive buffer size
--- (small, so that a peer that stops reading fills up quickly).
function S.connect(port, rcvbuf)
  local fd = ffi.C.socket(AF_INET, SOCK_STREAM, 0)
  assert(fd >= 0, "socket failed")
  if rcvbuf then
    local v = ffi.new("int[1]", rcvbuf)
    ffi.C.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, v, 4)
  end
  local sa = ffi.new("struct lmtest_sockaddr_in")
  sa.family = AF_INET
  sa.port = htons(port)
  sa.addr = 0x0100007F -- 127.0.0.1 in network order
  assert(ffi.C.connect(fd, sa, ffi.sizeof(sa)) == 0, "connect failed")
  return fd
end

--- Sends all of `s` (small amounts; loopback takes them at once).
function S.send(fd, s)
  local n = ffi.C.send(fd, s, #s, MSG_NOSIGNAL)
  assert(n == #s, "short send")
end

local buf = ffi.new("uint8_t[65536]")
--- What is there to read now: a string, "" at end of stream, nil if nothing yet.
function S.recv(fd)
  local n = ffi.C.recv(fd, buf, 65536, MSG_DONTWAIT)
  if n > 0 then return ffi.string(buf, n) end
  if n == 0 then return "" end
  return nil
end

--- Closes with a reset (SO_LINGER 0): the peer's next read or write fails.
function S.reset(fd)
  local l = ffi.new("struct lmtest_linger", 1, 0)
  ffi.C.setsockopt(fd, SOL_SOCKET, SO_LINGER, l, ffi.sizeof(l))
  ffi.C.close(fd)
end

--- Half-closes (shutdown SHUT_WR: the peer reads end of stream, may still write).
function S.half_close(fd) ffi.C.shutdown(fd, 1) end

function S.close(fd) ffi.C.close(fd) end

return S
