-- #browser: a real browser. Headless Chromium loads the chat page of examples/chat.lua,
-- connects over WebSocket, sends a message, and must show it broadcast back in its
-- DOM; a client of the library connected to the same chat must receive it too.
-- Run by scripts/test-lua.sh with --tags=browser (needs Debian's chromium).
local H = require("helpers")
local lm = H.lm
local cjson = require("cjson")

local function find_chromium()
  for _, name in ipairs({ "chromium", "chromium-browser", "google-chrome" }) do
    local p = io.popen("command -v " .. name .. " 2>/dev/null")
    local path = p:read("*l")
    p:close()
    if path and path ~= "" then return path end
  end
end

describe("browser #browser", function()
  it("headless Chromium chats through examples/chat.lua", function()
    local chromium = find_chromium()
    assert(chromium, "chromium is not installed (apt-get install chromium)")
    local mgr = assert(lm.new())
    local server = H.spawn(string.format("luajit %s/examples/chat.lua 0", H.root))
    local browser
    finally(function() -- also when an assertion below fails: nothing left running
      if browser then browser:kill() end
      server:kill()
    end)
    local port
    H.run_until(mgr, function()
      port = tonumber(server:output():match("listening on http://127%.0%.0%.1:(%d+)"))
      return port or server:done()
    end, 10000)
    assert(port, "chat.lua did not start")

    -- a second participant: the library's own WebSocket client
    local seen = {}
    local opened = false
    assert(mgr:connect("ws://127.0.0.1:" .. port .. "/ws?name=observer", {
      ws_open = function() opened = true end,
      ws_message = function(_, m) seen[#seen + 1] = cjson.decode(m) end,
    }))
    assert.truthy(H.run_until(mgr, function() return opened end))

    local word = "hello-" .. lm.hex(lm.md5(tostring(os.time()) .. tostring(H.now()))):sub(1, 12)
    local profile = H.tmpdir() .. "/chromium-profile"
    local url = string.format("http://127.0.0.1:%d/?name=robot&say=%s", port, word)
    browser = H.spawn(string.format(
      "timeout 60 %s --headless --no-sandbox --disable-gpu --disable-quic --no-first-run " ..
      "--disable-background-networking --disable-component-update --disable-sync --disable-extensions " ..
      "--user-data-dir=%s --virtual-time-budget=5000 --dump-dom %s",
      chromium, profile, H.shell_quote(url)))
    local finished = H.run_until(mgr, function() return browser:done() end, 60000)
    if not finished then browser:kill() end
    server:kill()
    mgr:close()
    os.execute("rm -rf " .. H.shell_quote(profile))

    assert.is_true(finished)
    assert.equal(0, browser.rc, browser.err)
    -- the page showed its own message, as broadcast back by the server
    assert.truthy(browser.out:find('<li class="msg">robot: ' .. word .. "</li>", 1, true), browser.out)
    assert.truthy(browser.out:find('class="open">connected as robot<', 1, true))
    -- and the other participant got it too
    local got
    for _, m in ipairs(seen) do
      if m.type == "msg" and m.name == "robot" and m.text == word then got = true end
    end
    assert.is_true(got)
  end)
end)
