-- Gives a cancelled (or dead-lettered) purchase's unit back, exactly once per receipt, and
-- drops any outbox entry it still has.
--
-- The unit goes back to the bucket that sold it (the receipt names it: domain/shard.rs).
-- KEYS[1] sale, KEYS[2] restored (set), KEYS[3] outbox, KEYS[4] outbox:due, KEYS[5] outbox:attempts
-- ARGV[1] receipt, ARGV[2] the receipt's activity_id
-- Reply: 1 unit restored, 0 already restored before, 2 recorded but no unit to give back (the
-- product moved on to another activity, or stock is unlimited), -1 the sale is not loaded
-- (caller rebuilds it from MySQL, which counts this unit as returned, then calls again).
-- A returned purchase has no business in the outbox, whatever else happens below.
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[5], ARGV[1])
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return 0 end
local f = redis.call('HMGET', KEYS[1], 'activity_id', 'stock', 'expire_at')
if not f[1] then return -1 end
redis.call('SADD', KEYS[2], ARGV[1])
if f[3] then redis.call('PEXPIREAT', KEYS[2], f[3]) end
if f[1] ~= ARGV[2] or tonumber(f[2]) == -1 then return 2 end
redis.call('HINCRBY', KEYS[1], 'stock', 1)
-- A unit appeared: a refill's proof that every bucket was empty no longer holds for this one
-- (`gen`), and it sells again at once (`dry_until`).
redis.call('HINCRBY', KEYS[1], 'gen', 1)
redis.call('HDEL', KEYS[1], 'dry_until')
return 1
