--- LibMongoose.util: utilities on Lua strings (URL encoding, query strings, base64,
--- hex, CRC-32, MD5, SHA-1) and the library's version. Each is `lm.NAME` as it is here.
local ffi = require("ffi")
local base = require("LibMongoose.base")
local options = require("LibMongoose.options")
base.internal()

local ffi_new, ffi_string, ffi_cast = ffi.new, ffi.string, ffi.cast
local type, tonumber = type, tonumber
local str_byte, str_char, str_format, str_gsub, str_match, str_gmatch = string.byte, string.char, string.format,
  string.gsub, string.match, string.gmatch
local floor = math.floor

local C = base.C
local R_OK = base.R_OK
local raise, argerr, typeof, fail = base.raise, base.argerr, base.typeof, base.fail
local check_integer = options.check_integer

local M = {}

-- Out-parameters, allocated once (lua-resty-core style); read right after each call.
local size_out = ffi_new("size_t[1]")
local digest_buf = ffi_new("uint8_t[20]")
local hex41 = ffi_new("char[41]")

-- A scratch buffer, grown on demand; large one-off requests get their own allocation so
-- that the shared buffer stays small.
local scratch, scratch_cap = ffi_new("uint8_t[?]", 4096), 4096
local function get_buf(n)
  if n <= scratch_cap then return scratch end
  if n <= 1048576 then
    local cap = scratch_cap
    while cap < n do cap = cap * 2 end
    scratch, scratch_cap = ffi_new("uint8_t[?]", cap), cap
    return scratch
  end
  return ffi_new("uint8_t[?]", n)
end

local function check_str(fname, what, s)
  if type(s) ~= "string" then
    raise(str_format("%s: bad argument '%s' (string expected, got %s)", fname, what, typeof(s)))
  end
end

---------------------------------------------------------------------------------------
-- URLs

local function hex_to_char(h) return str_char(tonumber(h, 16)) end
local function char_to_hex(c) return str_format("%%%02X", str_byte(c)) end

--- Percent-decodes `s`; with `plus`, "+" becomes a space (form encoding).
local function url_decode(s, plus)
  if type(s) ~= "string" then argerr("url_decode", "s", "string", s) end
  if plus then s = str_gsub(s, "+", " ") end
  return (str_gsub(s, "%%(%x%x)", hex_to_char))
end
M.url_decode = url_decode

--- Percent-encodes every byte of `s` outside A-Z a-z 0-9 - . _ ~
function M.url_encode(s)
  if type(s) ~= "string" then argerr("url_encode", "s", "string", s) end
  return (str_gsub(s, "[^%w%-%._~]", char_to_hex))
end

--- Parses "a=1&b=2&b=3" into { a = "1", b = { "2", "3" } } (decoded; "+" is a space).
function M.parse_query(qs)
  if type(qs) ~= "string" then argerr("parse_query", "qs", "string", qs) end
  local t = {}
  for pair in str_gmatch(qs, "[^&;]+") do
    local k, v = str_match(pair, "^([^=]*)=(.*)$")
    if not k then k, v = pair, "" end
    k, v = url_decode(k, true), url_decode(v, true)
    local old = t[k]
    if old == nil then
      t[k] = v
    elseif type(old) == "table" then
      old[#old + 1] = v
    else
      t[k] = { old, v }
    end
  end
  return t
end

---------------------------------------------------------------------------------------
-- Encodings and digests

--- Base64 (standard, padded; `url_safe`: the URL alphabet, no padding).
function M.base64_encode(s, url_safe)
  check_str("base64_encode", "s", s)
  local n = #s
  local cap = floor((n + 2) / 3) * 4 + 1
  local buf = get_buf(cap)
  local r = C.wss_base64_encode(s, n, url_safe and true or false, ffi_cast("char *", buf), cap, size_out)
  if r ~= R_OK then return fail(nil, r) end
  return ffi_string(buf, size_out[0])
end

--- Decodes base64 (padding optional); nil, err for malformed input.
function M.base64_decode(s, url_safe)
  check_str("base64_decode", "s", s)
  local n = #s
  local cap = floor(n * 3 / 4) + 3
  local buf = get_buf(cap)
  local r = C.wss_base64_decode(s, n, url_safe and true or false, buf, cap, size_out)
  if r ~= R_OK then return fail(nil, r) end
  return ffi_string(buf, size_out[0])
end

--- Lower-case hex of the bytes of `s`.
function M.hex(s)
  check_str("hex", "s", s)
  local cap = #s * 2 + 1
  local buf = get_buf(cap)
  local r = C.wss_hex(s, #s, ffi_cast("char *", buf), cap, size_out)
  if r ~= R_OK then return fail(nil, r) end
  return ffi_string(buf, size_out[0])
end

--- CRC-32 (as zlib's crc32) of `s`, continuing from `crc` (default 0).
function M.crc32(s, crc)
  check_str("crc32", "s", s)
  if crc == nil then crc = 0 end
  check_integer("crc32", "argument 'crc'", crc, 0, 0xFFFFFFFF, "32-bit unsigned integer")
  return tonumber(C.wss_crc32(crc, s, #s))
end

--- MD5 digest of `s`: 16 raw bytes.
function M.md5(s)
  check_str("md5", "s", s)
  C.wss_md5(s, #s, digest_buf)
  return ffi_string(digest_buf, 16)
end

--- MD5 digest of `s` as 32 hex digits.
function M.md5_hex(s)
  check_str("md5_hex", "s", s)
  C.wss_md5_hex(s, #s, hex41)
  return ffi_string(hex41, 32)
end

--- SHA-1 digest of `s`: 20 raw bytes.
function M.sha1(s)
  check_str("sha1", "s", s)
  C.wss_sha1(s, #s, digest_buf)
  return ffi_string(digest_buf, 20)
end

--- SHA-1 digest of `s` as 40 hex digits.
function M.sha1_hex(s)
  check_str("sha1_hex", "s", s)
  C.wss_sha1_hex(s, #s, hex41)
  return ffi_string(hex41, 40)
end

--- The library version, e.g. "0.1.0".
function M.version()
  return ffi_string(C.wss_version())
end

return M
