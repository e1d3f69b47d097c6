-- Cached redirects over a hot set of codes. CODES (comma-separated), UNKNOWN_PCT and METHOD come
-- from the environment; UNKNOWN_PCT percent of requests use one of 1000 codes that do not exist
-- (a scanner's repeated misses: the negative cache answers them after the first lookup). METHOD=HEAD
-- sends the same redirects without recording clicks (the same cache path, no database writes).
local codes = {}
for code in string.gmatch(os.getenv("CODES") or "", "[^,]+") do codes[#codes + 1] = code end
local unknown_pct = tonumber(os.getenv("UNKNOWN_PCT") or "0")
local method = os.getenv("METHOD") or "GET"
request = function()
  if unknown_pct > 0 and math.random(100) <= unknown_pct then
    return wrk.format(method, "/unknown" .. math.random(1000))
  end
  return wrk.format(method, "/" .. codes[math.random(#codes)])
end
