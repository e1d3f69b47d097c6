-- Cached redirects over a hot set of codes. CODES (comma-separated) and UNKNOWN_PCT come from
-- the environment; UNKNOWN_PCT percent of requests use a code that does not exist.
local codes = {}
for code in string.gmatch(os.getenv("CODES") or "", "[^,]+") do codes[#codes + 1] = code end
local unknown_pct = tonumber(os.getenv("UNKNOWN_PCT") or "0")
local counter = 0

function setup(thread)
  thread:set("id", math.random(1, 1000000))
end

request = function()
  counter = counter + 1
  if unknown_pct > 0 and math.random(100) <= unknown_pct then
    return wrk.format("GET", "/zz" .. id .. "x" .. counter)
  end
  return wrk.format("GET", "/" .. codes[math.random(#codes)])
end
