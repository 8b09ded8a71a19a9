-- wrk script: GET /data/{id} rotating over the 1,000 ids of Fixture.ts (idOf), with the bench key.
-- TOKEN overrides the key (the real server's key); IDS names a file of ids, one a line, instead of idOf's.
local token = os.getenv("TOKEN") or "strata_bench_lean_0000000000000000"
local ids = {}
local file = os.getenv("IDS")
if file then
  for line in io.lines(file) do
    if #line > 0 then ids[#ids + 1] = line end
  end
else
  for i = 0, 999 do
    ids[#ids + 1] = string.format("0193a1b2-c3d4-7%03d-8%03d-%012d", i % 1000, (i * 7) % 1000, i * 7919)
  end
end
local headers = { ["Authorization"] = "Bearer " .. token }
local n = 0

function setup(thread)
  thread:set("offset", math.random(1, 1000))
end

function request()
  n = n + 1
  local id = ids[((n + (offset or 0)) % #ids) + 1]
  return wrk.format("GET", "/data/" .. id, headers)
end

local statuses = {}
function response(status)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency)
  io.write(string.format("P99_US %d\n", latency:percentile(99)))
  io.write(string.format("P50_US %d\n", latency:percentile(50)))
  io.write(string.format("REQS %d ERRORS %d\n", summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout))
end
