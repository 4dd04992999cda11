-- Counts a resend the queue accepted, for entries still in the outbox (one the consumer
-- acknowledged meanwhile is gone, and stays gone).
--
-- KEYS[1] outbox, KEYS[2] outbox:attempts
-- ARGV: receipts the queue accepted. Reply: how many were counted.
local counted = 0
for _, receipt in ipairs(ARGV) do
  if redis.call('HEXISTS', KEYS[1], receipt) == 1 then
    redis.call('HINCRBY', KEYS[2], receipt, 1)
    counted = counted + 1
  end
end
return counted
