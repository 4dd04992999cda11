-- A rebalance's first step, on the bucket that gives (sale/rebalance.rs): takes half of its
-- stock (rounded up) for bucket ARGV[3] and records the move in its out-log, atomically, so
-- the units are always either in this stock or in the log until the receiving bucket has them.
-- With ARGV[4] = "look" it takes nothing: a reading for the proof that every bucket is empty.
--
-- KEYS[1] sale, KEYS[2] moves:out (hash: move id -> "<to bucket>:<units>")
-- ARGV[1] activity_id, ARGV[2] move id, ARGV[3] receiving bucket, ARGV[4] "take" | "look"
-- Reply {taken, stock left (-2 = this bucket does not hold the activity), gen, move id, "to:units", ...}:
-- `gen` counts every unit that ever arrived here (gives, restores); the out-log's entries
-- (before this move; none when the bucket holds another activity) are moves some caller has
-- not finished.
local f = redis.call('HMGET', KEYS[1], 'activity_id', 'stock', 'gen', 'expire_at')
local out = {0, -2, tonumber(f[3]) or 0}
-- The out-log belongs to the activity this bucket holds (a load of another one deletes it):
-- a caller asking for another activity gets no moves to finish.
if f[1] ~= ARGV[1] then return out end
local pending = redis.call('HGETALL', KEYS[2])
for i = 1, #pending do out[#out + 1] = pending[i] end
local stock = tonumber(f[2])
out[2] = stock
if ARGV[4] == 'take' and stock > 0 then
  local k = math.ceil(stock / 2)
  redis.call('HINCRBY', KEYS[1], 'stock', -k)
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3] .. ':' .. k)
  if f[4] then redis.call('PEXPIREAT', KEYS[2], f[4]) end
  out[1], out[2] = k, stock - k
end
return out
