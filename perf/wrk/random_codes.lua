-- Redirects for codes drawn uniformly at random from every link (cache-hostile): METHOD /CODE
-- (METHOD from the environment, default GET; HEAD redirects without recording a click).
-- CODES_FILE (from the environment) holds one code a line, every code the same length (perf/tier.sh
-- writes 7 characters and a newline each). Each wrk thread reads the file once, as one string, and
-- cuts a code out of it per request: 8 bytes per link per thread, not a Lua string per code. Each
-- thread seeds its own generator (wrk's threads would otherwise draw the same sequence); SEED
-- (environment, default the time) varies it between runs.
local data, width, count
local method = os.getenv("METHOD") or "GET"
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end

function init(args)
  local f = assert(io.open(assert(os.getenv("CODES_FILE"), "CODES_FILE is not set"), "rb"))
  data = f:read("*a")
  f:close()
  width = (data:find("\n", 1, true) or error("CODES_FILE: no newline")) -- code length + 1
  assert(#data % width == 0, "CODES_FILE: codes must all have the same length")
  count = #data / width
  math.randomseed((tonumber(os.getenv("SEED")) or os.time()) * 1000 + (thread_id or 0))
end

request = function()
  local i = math.random(count) - 1
  return wrk.format(method, "/" .. data:sub(i * width + 1, i * width + width - 1))
end
