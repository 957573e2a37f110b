-- wrk script: POST /predict with a batch of names per request.
--   wrk -t1 -c8 -d10s --latency -s benchmarks/wrk_post.lua http://127.0.0.1:8000 -- names.txt 1000 repeat
--   ... -- names.txt 1000 unique
-- Each request takes the next BATCH surnames from the file (one a line; default 1,000 a request).
-- "repeat" (the default) cycles through the file, so once every name has been asked the server's
-- cache answers: what traffic that repeats surnames costs. "unique" appends a running number to
-- every name (digits are dropped when a name is folded, so the model still reads real surnames):
-- no name is ever cached, every request costs forward passes.

local names = {"Dostoevsky", "Nakamura", "O'Brien", "Schmidt", "Rossi", "Kowalski", "Nguyen",
               "Papadopoulos", "Garcia", "Dubois", "Smith", "Kim", "Zhang", "Novak", "Silva", "Murphy"}
local batch = 1000
local unique = false
local position = 0
local counter = 0
local thread_id = 0
local prefix = ""

local function json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c) return string.format("\\u%04x", string.byte(c)) end) .. '"'
end

function setup(thread)
  thread:set("thread_id", thread_id)
  thread_id = thread_id + 1
end

function init(args)
  if args[1] and args[1] ~= "" then
    local loaded = {}
    for line in io.lines(args[1]) do
      if #line > 0 then loaded[#loaded + 1] = line end
    end
    if #loaded > 0 then names = loaded end
  end
  batch = tonumber(args[2] or "1000") or 1000
  unique = args[3] == "unique"
  prefix = string.format("%d%03d", os.time(), thread_id or 0)
  position = ((thread_id or 0) * 7919) % #names
end

function request()
  local parts = {}
  for i = 1, batch do
    position = position % #names + 1
    local name = names[position]
    if unique then
      counter = counter + 1
      name = name .. prefix .. string.format("%09d", counter)
    end
    parts[i] = json_string(name)
  end
  local body = '{"names":[' .. table.concat(parts, ",") .. '],"k":3}'
  return wrk.format("POST", "/predict", {["Content-Type"] = "application/json"}, body)
end
