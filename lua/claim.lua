-- Claims the product's outbox entries that are due for a resend. Atomic, so several
-- outbox-retry runs at once claim disjoint entries: a claimed entry's due time moves forward
-- before anyone else can see it as due.
--
-- KEYS[1] outbox, KEYS[2] outbox:due, KEYS[3] outbox:attempts
-- ARGV[1] now (ms), ARGV[2] next due time for the claimed entries (ms), ARGV[3] limit
-- Reply: a flat list receipt, message, attempts (this claim included), ...
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, receipt in ipairs(due) do
  local message = redis.call('HGET', KEYS[1], receipt)
  if message then
    local attempts = redis.call('HINCRBY', KEYS[3], receipt, 1)
    redis.call('ZADD', KEYS[2], ARGV[2], receipt)
    out[#out + 1] = receipt
    out[#out + 1] = message
    out[#out + 1] = attempts
  else
    redis.call('ZREM', KEYS[2], receipt)
    redis.call('HDEL', KEYS[3], receipt)
  end
end
return out
