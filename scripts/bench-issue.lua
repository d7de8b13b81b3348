-- wrk script for scripts/bench-issue.sh.
--
--   wrk ... -s scripts/bench-issue.lua URL              GETs URL (wrk's static fast path)
--   wrk ... -s scripts/bench-issue.lua URL -- FILE      POSTs to URL, rotating the JWTs in
--                                                       FILE (one a line) across requests
--   wrk ... -s scripts/bench-issue.lua URL -- FILE GET  the same, as GETs without a body
--
-- Either way it ends with one line for the caller to parse:
--   WRK requests=N seconds=S rps=R p50_ms=A p99_ms=B non2xx=C socket_errors=D

local threads = 0

function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end

function init(args)
  local path = args[1]
  if not path then
    return -- no request() defined: wrk sends its one prebuilt request
  end
  local get = args[2] == "GET"
  local requests = {}
  for line in io.lines(path) do
    if #line > 0 then
      local auth = "Bearer " .. line
      requests[#requests + 1] = get and wrk.format("GET", nil, { ["Authorization"] = auth })
        or wrk.format("POST", nil, { ["Authorization"] = auth, ["Content-Type"] = "application/json" }, "{}")
    end
  end
  assert(#requests > 0, "no JWTs in " .. path)
  -- Threads start at different callers, then each walks the list round-robin.
  local next = (id * 37) % #requests
  request = function()
    next = next % #requests + 1
    return requests[next]
  end
end

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "WRK requests=%d seconds=%.2f rps=%.1f p50_ms=%.3f p99_ms=%.3f non2xx=%d socket_errors=%d\n",
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.status, e.connect + e.read + e.write + e.timeout))
end
