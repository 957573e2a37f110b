-- wrk script: GET /predict with a different name on every request, so the server's answer cache
-- never hits and every request costs a forward pass.
--   wrk -t1 -c8 -d10s --latency -s benchmarks/wrk_predict.lua http://127.0.0.1:8000 -- names.txt
-- Each request takes the next surname from the file (one a line; default: a built-in list) and
-- appends a running number: the raw string is new each time, and the model still reads a real
-- surname (digits are dropped when a name is folded to ASCII). The number carries the start time
-- and the wrk thread, so neither two threads nor two runs against one server send the same string.

local names = {"Dostoevsky", "Nakamura", "O'Brien", "Schmidt", "Rossi", "Kowalski", "Nguyen",
               "Papadopoulos", "Garcia", "Dubois", "Smith", "Kim", "Zhang", "Novak", "Silva", "Murphy"}
local counter = 0
local thread_id = 0
local prefix = ""

local function urlencode(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end

function setup(thread)
  thread:set("thread_id", thread_id)
  thread_id = thread_id + 1
end

function init(args)
  if args[1] then
    local loaded = {}
    for line in io.lines(args[1]) do
      if #line > 0 then loaded[#loaded + 1] = urlencode(line) end
    end
    if #loaded > 0 then names = loaded end
  else
    for i, n in ipairs(names) do names[i] = urlencode(n) end
  end
  prefix = string.format("%d%03d", os.time(), thread_id or 0)
end

function request()
  counter = counter + 1
  local name = names[(counter % #names) + 1]
  return wrk.format("GET", "/predict?name=" .. name .. prefix .. string.format("%09d", counter))
end
