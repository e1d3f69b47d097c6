-- A flood of codes that do not exist: GET /CODE, CODE 7 random base62 characters (always GET: an
-- unknown code records no click, and wrk cannot read a HEAD answer that declares a body, as a 404
-- does). There are 62^7 ≈ 3.5e12 such codes, so a request hits one of N links with probability
-- N / 3.5e12 (about 3 in a million requests with 10 million links) and a code practically never
-- repeats. Each wrk thread seeds its own generator from SEED (environment, default the time) and
-- its number, so threads and runs draw different codes.
local alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
local chars = {}
for i = 1, #alphabet do chars[i] = alphabet:sub(i, i) end
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end

function init(args)
  math.randomseed((tonumber(os.getenv("SEED")) or os.time()) * 1000 + 500 + (thread_id or 0))
end

local code = {}
request = function()
  for i = 1, 7 do code[i] = chars[math.random(62)] end
  return wrk.format("GET", "/" .. table.concat(code))
end
