-- wrk script: send each pre-built raw HTTP request in $WRK_REQUESTS once, in order.
-- The file holds records "<length>\n<request bytes>". Signed webhooks cannot be
-- signed in Lua, so they are built and signed beforehand (bench/load.py).
local requests = {}
local next_request = 0

function init(args)
  local file = assert(io.open(os.getenv("WRK_REQUESTS"), "rb"))
  local data = file:read("*a")
  file:close()
  local pos = 1
  while pos <= #data do
    local newline = data:find("\n", pos, true)
    local length = tonumber(data:sub(pos, newline - 1))
    requests[#requests + 1] = data:sub(newline + 1, newline + length)
    pos = newline + length + 1
  end
end

function request()
  -- Past the end, start again: the runner builds enough requests for its duration
  -- and says so if they ran out (repeats would be duplicates).
  next_request = next_request % #requests + 1
  return requests[next_request]
end
