-- wrk script for bench/http/run.ts: only a done() hook. Defining request()/response() would make
-- wrk call Lua on every request and cost throughput, so nothing else is defined.
-- Prints one line, "JSON {...}", latencies in microseconds. errors.status is wrk's count of
-- responses with a status >= 400 (the harness reports it as non-2xx; nothing here sends 3xx).
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'JSON {"requests":%d,"duration_us":%d,"bytes":%d,"err_connect":%d,"err_read":%d,"err_write":%d,' ..
    '"err_status":%d,"err_timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
