-- Ends a refill of one bucket (sale/rebalance.rs): its lease is free, and with ARGV[1] > 0 the
-- bucket answers "sold out" for that many ms (the refill proved every bucket empty; a unit that
-- arrives here, by a give or a restore, ends that at once). Nothing if the sale is gone.
-- KEYS[1] sale. ARGV[1] how long the bucket is dry (ms; 0 = not dry). Reply: 1 done, 0 no sale.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(ARGV[1]) > 0 then
  redis.call('HSET', KEYS[1], 'dry_until', now + tonumber(ARGV[1]), 'refill_until', 0)
else
  redis.call('HSET', KEYS[1], 'refill_until', 0)
end
return 1
