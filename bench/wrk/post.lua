-- wrk script for the benchmark: POST one precomputed body, then print a JSON summary.
-- Usage: wrk ... -s bench/wrk/post.lua URL -- BODY_FILE [CONTENT_TYPE] [ACCEPT] [AUTHORIZATION]
-- The body is read from a file (the upscale body is 6.4 MB of base64 JSON). The summary
-- line starts with "BENCH_JSON " so bench/run.py can find it in wrk's output.

function init(args)
   local path = args[1]
   if path == nil then
      error("usage: -s post.lua URL -- BODY_FILE [CONTENT_TYPE] [ACCEPT]")
   end
   local file = assert(io.open(path, "rb"))
   wrk.body = file:read("*a")
   file:close()
   wrk.method = "POST"
   wrk.headers["Content-Type"] = args[2] or "application/json"
   if args[3] ~= nil and args[3] ~= "" then
      wrk.headers["Accept"] = args[3]
   end
   if args[4] ~= nil and args[4] ~= "" then
      wrk.headers["Authorization"] = args[4]
   end
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"non_2xx_3xx":%d,"timeouts":%d,' ..
      '"latency_min_us":%d,"latency_mean_us":%.1f,"latency_max_us":%d,' ..
      '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.min, latency.mean, latency.max,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9)))
end
