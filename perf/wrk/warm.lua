-- Requests each generated code L0000000 .. L(N-1) once to load it into the cache. METHOD=HEAD
-- (the default) loads without recording clicks, so the figure is the cache's alone; GET also
-- queues a click per request.
-- Threads interleave from START: thread t takes codes START+t, START+t+THREADS, ...
local n = tonumber(os.getenv("N") or "1000000")
local start = tonumber(os.getenv("START") or "0")
local threads = tonumber(os.getenv("THREADS") or "2")
local created = 0
function setup(thread)
  thread:set("tid", created)
  created = created + 1
end
local method = os.getenv("METHOD") or "HEAD"
local i = -1
request = function()
  i = i + 1
  return wrk.format(method, string.format("/L%07d", (start + i * threads + tid) % n))
end
