-- POST /users with a unique email on every request (thread id + counter + a run tag).
local counter = 0
local tag = os.getenv("RUN_TAG") or tostring(os.time())

function setup(thread)
  thread:set("id", math.random(1, 1000000000))
end

request = function()
  counter = counter + 1
  local email = string.format("load-%s-%d-%d@perf.example", tag, id, counter)
  local body = string.format('{"username":"load%d","email":"%s"}', counter, email)
  return wrk.format("POST", "/users", {["Content-Type"] = "application/json"}, body)
end
