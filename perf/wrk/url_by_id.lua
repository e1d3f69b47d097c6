-- GET /urls/{id} over the seeded ids 1..MAX_ID; with KEY set, as a keyed client
-- (`authorization: Bearer KEY`).
local max_id = tonumber(os.getenv("MAX_ID") or "2000")
local key = os.getenv("KEY")
local headers = {}
if key and key ~= "" then headers["authorization"] = "Bearer " .. key end
request = function()
  return wrk.format("GET", "/urls/" .. math.random(1, max_id), headers)
end
