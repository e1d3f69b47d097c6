-- GET /urls?q=TERM&per_page=PER_PAGE, cycling through TERMS (comma-separated, from the
-- environment); each thread starts at its own place in the list so the connections do not move in
-- step. Terms are percent-encoded (anything but unreserved characters). KEY, when set, is sent as
-- `authorization: Bearer KEY`.
local terms = {}
for term in string.gmatch(os.getenv("TERMS") or "", "[^,]+") do terms[#terms + 1] = term end
local per_page = os.getenv("PER_PAGE") or "20"
local key = os.getenv("KEY")
local headers = {}
if key and key ~= "" then headers["authorization"] = "Bearer " .. key end

local function encode(s)
  return (string.gsub(s, "[^%w%-%._~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end

local paths = {}
for i, term in ipairs(terms) do paths[i] = "/urls?q=" .. encode(term) .. "&per_page=" .. per_page end

local next_term = 1
local threads = 0
setup = function(thread)
  threads = threads + 1
  thread:set("start", threads)
end

init = function(args)
  math.randomseed(os.time() + (start or 0))
  next_term = math.random(#paths)
end

request = function()
  local path = paths[next_term]
  next_term = next_term % #paths + 1
  return wrk.format("GET", path, headers)
end
