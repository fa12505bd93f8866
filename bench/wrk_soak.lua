-- wrk script for the soak: a fixed mix of good and bad requests, paced by a per-connection delay.
-- Requests come from the JSON-lines file named by WRK_MIX ({"path", "body", "kind"} each; kind
-- "good" expects 200, "bad" a 4xx); WRK_DELAY_MS paces each connection. Prints one JSON line
-- with latency percentiles and the count of every status seen.
local mix, n = {}, 0
for line in io.lines(os.getenv("WRK_MIX")) do
  local path = line:match('"path": "([^"]*)"')
  local body = line:match('"body_file": "([^"]*)"')
  local f = assert(io.open(body, "rb"))
  n = n + 1
  mix[n] = wrk.format("POST", path, {["Content-Type"] = "application/json"}, f:read("*a"))
  f:close()
end
local delay_ms = tonumber(os.getenv("WRK_DELAY_MS") or "0")
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  i = 0
  statuses = {}
end

function request()
  i = i % n + 1
  return mix[i]
end

function delay()
  return delay_ms
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      counts[status] = (counts[status] or 0) + count
    end
  end
  local parts = {}
  for status, count in pairs(counts) do
    table.insert(parts, string.format('"%d": %d', status, count))
  end
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "errors": %d, "p50_us": %d, "p99_us": %d, '
    .. '"statuses": {%s}}\n',
    summary.requests, summary.duration, errors, latency:percentile(50), latency:percentile(99),
    table.concat(parts, ", ")))
end
