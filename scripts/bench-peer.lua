-- scripts/bench-peer.lua — wrk script of scripts/bench-peer.sh: posts Segment
-- /v1/batch bodies of 50 events (~340 bytes each; every fifth event of a
-- device a page call, the rest track calls) with unique messageIds
-- "<run id>-<n>", n = 0..N-1, then stops.
--
--   wrk -t T -c C -d 1h --timeout 60s -s scripts/bench-peer.lua URL -- RUN_ID N DEVICES BASIC_AUTH T DONE_FILE
--
-- (BASIC_AUTH: the base64 of "<write key>:"; wrk's Lua is LuaJIT, Lua 5.1.)
--
-- Thread t sends the batches k = t, t+T, t+2T, ... (events 50k..50k+49) once
-- each, and stops when every one of its batches has a response, adding a
-- line to DONE_FILE (wrk itself waits for its -d or a SIGINT: the caller
-- sends that when the file has T lines). A
-- connection that finds its thread's batches all sent asks for /bench-peer-idle
-- (a 404 on both servers, not counted) after a pause. done() prints
-- "bench-peer: S sent, A acknowledged, E not acknowledged" (events).
local batchSize = 50

local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

-- Per thread: run id, quota (batches), the next batch, counts.
local runID, events, devices, auth, nthreads, doneFile
local nextBatch, quota, issued = 0, 0, 0
ok, bad = 0, 0 -- globals: done() reads them with thread:get
local templates = {}

local locales = { "en-US", "en-GB", "de-DE", "fr-FR", "es-ES", "ja-JP" }
local trackEvents = { "Product Viewed", "Product Added", "Button Clicked", "Checkout Started" }
local library = '"library":{"name":"analytics.js","version":"5.2.0"}'

-- The events of one cycle of 5*DEVICES: event j is device j % DEVICES's
-- (j // DEVICES)-th, a page call when that is 0. Each template is the event
-- split around its messageId number and its timestamp.
local function buildTemplates()
  for j = 0, 5 * devices - 1 do
    local d = j % devices
    local k = math.floor(j / devices)
    local product = 1 + (d * 37) % 500
    local anon = string.format("%08x-%04x-4%03x-8%03x-%012x", d * 2654435761 % 4294967296, d % 65536, d % 4096, (d * 7) % 4096, d * 40503)
    local who = '","anonymousId":"' .. anon .. '"'
    if d % 10 < 4 then
      who = who .. ',"userId":"user-' .. d .. '"'
    end
    local locale = locales[1 + d % #locales]
    local head, props
    if k == 0 then
      head = '{"type":"page","name":"Product","messageId":"'
      props = string.format('"properties":{"path":"/products/%d","url":"https://shop.example.com/products/%d","title":"Trail Runner %d | Example Shop","referrer":"https://www.google.com/"},"context":{"locale":"%s",%s}}',
        product, product, product, locale, library)
    else
      local name = trackEvents[k]
      head = '{"type":"track","event":"' .. name .. '","messageId":"'
      props = string.format('"properties":{"product_id":"sku-%d","price":%d.%02d},"context":{"locale":"%s","page":{"path":"/products/%d"},%s}}',
        product, 9 + d % 290, d % 100, locale, product, library)
    end
    templates[j] = { head, who .. ',"timestamp":"', '",' .. props }
  end
end

function init(args)
  runID, events, devices, auth, nthreads, doneFile = args[1], tonumber(args[2]), tonumber(args[3]), args[4], tonumber(args[5]), args[6]
  local batches = math.floor(events / batchSize)
  quota = math.floor(batches / nthreads)
  if tid < batches % nthreads then
    quota = quota + 1
  end
  nextBatch = tid
  buildTemplates()
end

local parts = {}
local verified = false
function request()
  -- wrk calls request() of thread 0 once before it starts, to check the
  -- request (script_verify_request): that call must not use up a batch.
  if tid == 0 and not verified then
    verified = true
    return wrk.format("GET", "/bench-peer-idle")
  end
  if issued >= quota then
    return wrk.format("GET", "/bench-peer-idle")
  end
  local k = nextBatch
  nextBatch = nextBatch + nthreads
  issued = issued + 1
  local ts = os.date("!%Y-%m-%dT%H:%M:%S.000Z")
  local cycle = 5 * devices
  local p = 1
  parts[p] = '{"batch":['
  for i = 0, batchSize - 1 do
    local n = k * batchSize + i
    local t = templates[n % cycle]
    if i > 0 then
      p = p + 1
      parts[p] = ","
    end
    parts[p + 1] = t[1]
    parts[p + 2] = runID .. "-" .. n
    parts[p + 3] = t[2]
    parts[p + 4] = ts
    parts[p + 5] = t[3]
    p = p + 5
  end
  parts[p + 1] = '],"sentAt":"' .. ts .. '"}'
  for i = p + 2, #parts do
    parts[i] = nil
  end
  return wrk.format("POST", "/v1/batch", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Basic " .. auth,
  }, table.concat(parts))
end

function delay()
  if issued >= quota then
    return 200
  end
  return 0
end

function response(status, headers, body)
  if status == 404 then
    return -- an idle request
  end
  if status == 200 then
    ok = ok + 1
  else
    bad = bad + 1
  end
  if ok + bad == quota then
    wrk.thread:stop()
    local f = assert(io.open(doneFile, "a"))
    f:write(tid, "\n")
    f:close()
  end
end

function done(summary, latency, requests)
  local sent, acked, failed = 0, 0, 0
  for _, t in ipairs(threads) do
    acked = acked + t:get("ok") * batchSize
    failed = failed + t:get("bad") * batchSize
  end
  io.write(string.format("bench-peer: %d sent, %d acknowledged, %d not acknowledged\n", acked + failed, acked, failed))
end
