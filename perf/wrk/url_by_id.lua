-- GET /urls/{id} over the seeded ids 1..MAX_ID.
local max_id = tonumber(os.getenv("MAX_ID") or "2000")
request = function()
  return wrk.format("GET", "/urls/" .. math.random(1, max_id))
end
