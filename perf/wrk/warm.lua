-- Requests each generated code L0000000 .. L(N-1) once to load it into the cache (GET: wrk cannot
-- read bodiless HEAD answers on keep-alive connections; the clicks go to the click queue).
-- Threads interleave from START: thread t takes codes START+t, START+t+THREADS, ...
local n = tonumber(os.getenv("N") or "1000000")
local start = tonumber(os.getenv("START") or "0")
local threads = tonumber(os.getenv("THREADS") or "2")
local created = 0
function setup(thread)
  thread:set("tid", created)
  created = created + 1
end
local i = -1
request = function()
  i = i + 1
  return wrk.format("GET", string.format("/L%07d", (start + i * threads + tid) % n))
end
