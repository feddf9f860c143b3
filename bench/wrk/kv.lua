-- One wrk script for both systems, so LeifDB and etcd get byte-for-byte the same workload
-- shape: random keys among KEYS, VALUE_BYTES-byte values, writes, linearizable reads or a
-- 50/50 mix. Used by bench/wrk_compare.py and bench/profile_leader.py:
--
--   wrk -t2 -c64 -d10s -s bench/wrk/kv.lua http://127.0.0.1:PORT -- SYSTEM WORKLOAD KEYS VALUE_BYTES
--
--   SYSTEM    leifdb (PUT/GET /db/<key>) or etcd (POST /v3/kv/put and /v3/kv/range)
--   WORKLOAD  write, read or mix
--
-- Every request is formatted once in init(): request() only picks one at random, so wrk
-- spends a few microseconds per request and its own CPU stays far below the servers'.
-- There is deliberately no response() hook (defining one makes wrk hand every response's
-- headers and body to Lua); wrk counts statuses above 399 itself (summary.errors.status).
-- done() prints one line "WRK_RESULT {json}" for the driver to parse.

local system, workload, key_count, value_bytes
local writes, reads = {}, {}
local setup_count = 0

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

local function base64(text)
   local out = {}
   for i = 1, #text, 3 do
      local a, b, c = text:byte(i, i + 2)
      local n = a * 65536 + (b or 0) * 256 + (c or 0)
      local c1 = math.floor(n / 262144) % 64
      local c2 = math.floor(n / 4096) % 64
      local c3 = math.floor(n / 64) % 64
      local c4 = n % 64
      out[#out + 1] = B64:sub(c1 + 1, c1 + 1) .. B64:sub(c2 + 1, c2 + 1)
         .. (b and B64:sub(c3 + 1, c3 + 1) or "=") .. (c and B64:sub(c4 + 1, c4 + 1) or "=")
   end
   return table.concat(out)
end

-- The key and value of index i (0-based); bench/wrk_compare.py preloads the same ones.
-- A value is the 6-byte key then one of 62 fillers: a multiple of 3 bytes before the filler
-- lets etcd's base64 value be the key's base64 then the filler's, each encoded once.
local KEY_BYTES = 6
local fillers, filler_b64 = {}, {}

local function key_of(i)
   return string.format("k%05d", i)
end

local function make_fillers()
   for v = 0, #ALNUM - 1 do
      local chars = {}
      for j = 0, value_bytes - KEY_BYTES - 1 do
         local k = (v + j * 13) % #ALNUM + 1
         chars[#chars + 1] = ALNUM:sub(k, k)
      end
      fillers[v] = table.concat(chars)
      filler_b64[v] = base64(fillers[v])
   end
end

local function value_of(i)
   return key_of(i) .. fillers[i % #ALNUM]
end

local function value_b64(i)
   return base64(key_of(i)) .. filler_b64[i % #ALNUM]
end

local function leifdb_write(i)
   local body = '{"value":"' .. value_of(i) .. '"}'
   return wrk.format("PUT", "/db/" .. key_of(i), {["Content-Type"] = "application/json"}, body)
end

local function leifdb_read(i)
   return wrk.format("GET", "/db/" .. key_of(i), {})
end

local function etcd_write(i)
   local body = '{"key":"' .. base64(key_of(i)) .. '","value":"' .. value_b64(i) .. '"}'
   return wrk.format("POST", "/v3/kv/put", {["Content-Type"] = "application/json"}, body)
end

local function etcd_read(i)
   local body = '{"key":"' .. base64(key_of(i)) .. '"}'
   return wrk.format("POST", "/v3/kv/range", {["Content-Type"] = "application/json"}, body)
end

local FORMATS = {
   leifdb = {write = leifdb_write, read = leifdb_read},
   etcd = {write = etcd_write, read = etcd_read},
}

local threads = {}

function setup(thread)
   setup_count = setup_count + 1
   thread:set("thread_id", setup_count)  -- a global of that thread's own Lua state
   threads[#threads + 1] = thread
end

function init(args)
   system, workload = args[1], args[2]
   key_count, value_bytes = tonumber(args[3]), tonumber(args[4])
   local formats = FORMATS[system]
   if formats == nil or key_count == nil or value_bytes == nil
      or value_bytes <= KEY_BYTES
      or (workload ~= "write" and workload ~= "read" and workload ~= "mix") then
      error("usage: -- leifdb|etcd write|read|mix KEYS VALUE_BYTES")
   end
   -- Deterministic per thread: a rerun sends the same key sequence.
   math.randomseed(1000003 * (thread_id or 0) + 17)
   make_fillers()
   for i = 0, key_count - 1 do
      if workload ~= "read" then writes[i + 1] = formats.write(i) end
      if workload ~= "write" then reads[i + 1] = formats.read(i) end
   end
end

local random = math.random

function request()
   if workload == "write" then
      return writes[random(key_count)]
   elseif workload == "read" then
      return reads[random(key_count)]
   elseif random() < 0.5 then
      return writes[random(key_count)]
   end
   return reads[random(key_count)]
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'WRK_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,'
         .. '"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,'
         .. '"max_us":%d,"mean_us":%.1f,"threads":%d}\n',
      summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
      e.status, e.timeout, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max, latency.mean, #threads))
end
