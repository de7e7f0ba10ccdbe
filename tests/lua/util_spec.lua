-- Utilities against published vectors: RFC 4648 (base64), RFC 1321 (MD5),
-- FIPS 180 / RFC 3174 (SHA-1), the CRC-32 check value of "123456789".
local H = require("helpers")
local lm = H.lm

describe("utilities", function()
  it("base64 encodes and decodes the RFC 4648 vectors", function()
    local v = { [""] = "", f = "Zg==", fo = "Zm8=", foo = "Zm9v", foob = "Zm9vYg==",
                fooba = "Zm9vYmE=", foobar = "Zm9vYmFy" }
    for plain, enc in pairs(v) do
      assert.equal(enc, lm.base64_encode(plain))
      assert.equal(plain, lm.base64_decode(enc))
    end
  end)

  it("base64 has a URL-safe alphabet without padding", function()
    local bytes = "\251\255\191\0"
    assert.equal("+/+/AA==", lm.base64_encode(bytes))
    assert.equal("-_-_AA", lm.base64_encode(bytes, true))
    assert.equal(bytes, lm.base64_decode("-_-_AA", true))
    assert.equal(bytes, lm.base64_decode("+/+/AA"))
  end)

  it("base64 round-trips every byte value and large inputs", function()
    local t = {}
    for i = 0, 255 do t[#t + 1] = string.char(i) end
    local all = table.concat(t)
    assert.equal(all, lm.base64_decode(lm.base64_encode(all)))
    local big = string.rep(all, 8192) -- 2 MiB: bigger than the shared scratch buffer
    assert.equal(big, lm.base64_decode(lm.base64_encode(big)))
  end)

  it("base64_decode returns nil, err for malformed input", function()
    local v, err, name = lm.base64_decode("Zm9v!")
    assert.is_nil(v)
    assert.equal("INVALID_ARGUMENT", name)
    assert.matches("^INVALID_ARGUMENT: ", err)
  end)

  it("hex", function()
    assert.equal("", lm.hex(""))
    assert.equal("00ff10617a", lm.hex("\0\255\16az"))
  end)

  it("crc32 matches the check value and continues incrementally", function()
    assert.equal(0xCBF43926, lm.crc32("123456789"))
    assert.equal(0, lm.crc32(""))
    assert.equal(0x414FA339, lm.crc32("The quick brown fox jumps over the lazy dog"))
    assert.equal(lm.crc32("123456789"), lm.crc32("6789", lm.crc32("12345")))
  end)

  it("md5 matches RFC 1321", function()
    local v = {
      [""] = "d41d8cd98f00b204e9800998ecf8427e",
      a = "0cc175b9c0f1b6a831c399e269772661",
      abc = "900150983cd24fb0d6963f7d28e17f72",
      ["message digest"] = "f96b697d7cb7938d525a2f31aaf161d0",
      abcdefghijklmnopqrstuvwxyz = "c3fcd3d76192e4007dfb496cca67e13b",
      ["12345678901234567890123456789012345678901234567890123456789012345678901234567890"] =
        "57edf4a22be3c955ac49da2e2107b67a",
    }
    for s, hex in pairs(v) do
      assert.equal(hex, lm.md5_hex(s))
      assert.equal(16, #lm.md5(s))
      assert.equal(hex, lm.hex(lm.md5(s)))
    end
  end)

  it("sha1 matches FIPS 180", function()
    assert.equal("a9993e364706816aba3e25717850c26c9cd0d89d", lm.sha1_hex("abc"))
    assert.equal("84983e441c3bd26ebaae4aa1f95129e5e54670f1",
      lm.sha1_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))
    assert.equal("da39a3ee5e6b4b0d3255bfef95601890afd80709", lm.sha1_hex(""))
    assert.equal("34aa973cd4c4daa4f61eeb2bdbad27316534016f", lm.sha1_hex(string.rep("a", 1000000)))
    assert.equal(20, #lm.sha1("abc"))
    assert.equal(lm.sha1_hex("abc"), lm.hex(lm.sha1("abc")))
  end)

  it("computes the WebSocket accept key of RFC 6455 section 1.3", function()
    local key = "dGhlIHNhbXBsZSBub25jZQ=="
    assert.equal("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
      lm.base64_encode(lm.sha1(key .. "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")))
  end)

  it("handles binary strings with zero bytes", function()
    local s = "a\0b\0c"
    assert.equal(s, lm.base64_decode(lm.base64_encode(s)))
    assert.are_not.equal(lm.md5_hex("a"), lm.md5_hex(s))
  end)

  it("url helpers and query parsing", function()
    assert.equal("a b/c", lm.url_decode("a%20b%2Fc"))
    assert.equal("a+b", lm.url_decode("a+b"))
    assert.equal("a b", lm.url_decode("a+b", true))
    assert.equal("a%20b%2F%C3%A9~", lm.url_encode("a b/\195\169~"))
    assert.same({ a = "1", b = { "2", "3" }, ["c d"] = "e&f", flag = "" },
      lm.parse_query("a=1&b=2&b=3&c+d=e%26f&flag"))
    assert.same({}, lm.parse_query(""))
  end)

  it("reports the library version", function()
    assert.matches("^%d+%.%d+%.%d+", lm.version())
  end)
end)
