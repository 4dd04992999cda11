-- The consumer's acknowledgement for one product, after its orders are rows in MySQL: each
-- receipt's outbox entry goes, and a purchase the live sale does not know (its buyer is missing:
-- Redis lost it and was rebuilt while the message was in flight) is adopted: its buyer is
-- recorded and its unit taken from the stock, so invariant 1 holds again.
--
-- KEYS[1] sale, KEYS[2] buyers, KEYS[3] outbox, KEYS[4] outbox:due, KEYS[5] outbox:attempts
-- ARGV: triples activity_id, user, receipt
-- Reply {adopted, oversold}: oversold counts adoptions that found no unit left (the unit had
-- been handed out again before the message arrived); the caller logs them loudly.
local sale = redis.call('HMGET', KEYS[1], 'activity_id', 'expire_at')
local live = sale[1]
local adopted, oversold = 0, 0
for i = 1, #ARGV, 3 do
  local activity, user, receipt = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  redis.call('HDEL', KEYS[3], receipt)
  redis.call('ZREM', KEYS[4], receipt)
  redis.call('HDEL', KEYS[5], receipt)
  if live == activity and redis.call('HSETNX', KEYS[2], activity .. ':' .. user, receipt) == 1 then
    local stock = tonumber(redis.call('HGET', KEYS[1], 'stock'))
    if stock == -1 then
      adopted = adopted + 1
    elseif stock > 0 then
      redis.call('HINCRBY', KEYS[1], 'stock', -1)
      adopted = adopted + 1
    else
      oversold = oversold + 1
    end
    if sale[2] then redis.call('PEXPIREAT', KEYS[2], sale[2]) end
  end
end
return {adopted, oversold}
