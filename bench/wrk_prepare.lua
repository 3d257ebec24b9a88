-- wrk script: POST one fixed ILP Prepare with an Authorization header, over
-- HTTP/1.1 keep-alive, and print a JSON summary line when done.
--
--   ILPBENCH_BODY_HEX=<prepare hex> ILPBENCH_AUTH="Bearer <token>" \
--     wrk -t1 -c64 -d5s -s bench/wrk_prepare.lua http://127.0.0.1:PORT/
--
-- run.py builds the Prepare (benchlib.bench_prepare) and the header. The
-- summary line starts with "ILPBENCH " so that it can be found in wrk's output.

local function unhex(hex)
  return (hex:gsub("..", function(cc) return string.char(tonumber(cc, 16)) end))
end

wrk.method = "POST"
wrk.body = unhex(os.getenv("ILPBENCH_BODY_HEX") or "")
wrk.headers["Authorization"] = os.getenv("ILPBENCH_AUTH") or ""
wrk.headers["Content-Type"] = "application/octet-stream"

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'ILPBENCH {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p99":%d,"mean":%.1f,"max":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max))
end
