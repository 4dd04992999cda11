-- Claims the product's outbox entries that are due for a resend. Atomic, so several
-- outbox-retry runs at once claim disjoint entries: a claimed entry's due time moves forward
-- before anyone else can see it as due. Due times are Redis' clock, as buy.lua wrote them.
--
-- KEYS[1] outbox, KEYS[2] outbox:due, KEYS[3] outbox:attempts
-- ARGV[1] backoff: when a claimed entry is due again, from now (ms), ARGV[2] limit
-- Reply: {now (ms), receipt, message, sends the queue accepted so far, ...}. A claim is not an
-- attempt: only a send the queue accepted counts (sent.lua), so an SQS outage uses up nothing.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local out = {now}
for _, receipt in ipairs(due) do
  local message = redis.call('HGET', KEYS[1], receipt)
  if message then
    redis.call('ZADD', KEYS[2], now + tonumber(ARGV[1]), receipt)
    out[#out + 1] = receipt
    out[#out + 1] = message
    out[#out + 1] = tonumber(redis.call('HGET', KEYS[3], receipt) or '0')
  else
    redis.call('ZREM', KEYS[2], receipt)
    redis.call('HDEL', KEYS[3], receipt)
  end
end
return out
