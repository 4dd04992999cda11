-- A rebalance's second step, on the bucket that receives: adds a move's units to its stock,
-- once per move id (the in-log), whoever calls it and however often (a caller that finishes a
-- move another one left half done). The giver's out-log entry is dropped after this (plain HDEL).
--
-- KEYS[1] sale, KEYS[2] moves:in (hash: move id -> units, of the moves given here)
-- ARGV[1] activity_id, ARGV[2] move id, ARGV[3] units
-- Reply: 1 given, 0 given before, 2 recorded but not given (this bucket holds another
-- activity now: the units belonged to one that ended), -1 this bucket is not loaded (the move
-- stays in the giver's log, where a rebuild counts it as on its way, until it can be given).
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 then return 0 end
local f = redis.call('HMGET', KEYS[1], 'activity_id', 'expire_at')
if not f[1] then return -1 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
if f[2] then redis.call('PEXPIREAT', KEYS[2], f[2]) end
if f[1] ~= ARGV[1] then return 2 end
redis.call('HINCRBY', KEYS[1], 'stock', tonumber(ARGV[3]))
redis.call('HINCRBY', KEYS[1], 'gen', 1)
redis.call('HDEL', KEYS[1], 'dry_until')
return 1
