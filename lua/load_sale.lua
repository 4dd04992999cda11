-- Writes a product's sale into Redis from what MySQL (and the outbox) say, atomically.
-- Used by warm-up and by the cache-miss rebuild (which holds the product's lock).
--
-- KEYS[1] sale, KEYS[2] buyers, KEYS[3] restored (set of receipts whose unit is back)
-- ARGV[1] mode: "if_missing" (rebuild: never overwrite a live sale) or "refresh" (warm-up:
--         a live sale of the same activity keeps its stock; only window and limits change)
-- ARGV[2] activity_id ("0" = the product has no activity: a short-lived negative entry)
-- ARGV[3] remaining stock (-1 = unlimited), ARGV[4] starts_at, ARGV[5] ends_at (ms),
-- ARGV[6] per_user_per_min, ARGV[7] rate, ARGV[8] burst, ARGV[9] seq,
-- ARGV[10] ttl of a negative entry (ms), ARGV[11] number of buyers n,
-- then n pairs (member, receipt), then the receipts whose unit is already back.
-- Reply: 0 left alone (already loaded), 1 written, 2 window and limits refreshed.
local live = redis.call('HGET', KEYS[1], 'activity_id')
if live and ARGV[1] == 'if_missing' then return 0 end
if live and live == ARGV[2] and live ~= '0' then
  redis.call('HSET', KEYS[1], 'starts_at', ARGV[4], 'ends_at', ARGV[5],
    'per_user_per_min', ARGV[6], 'rate', ARGV[7], 'burst', ARGV[8])
  return 2
end

redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'activity_id', ARGV[2], 'stock', ARGV[3], 'starts_at', ARGV[4],
  'ends_at', ARGV[5], 'per_user_per_min', ARGV[6], 'rate', ARGV[7], 'burst', ARGV[8],
  'seq', ARGV[9])
if ARGV[2] == '0' then
  redis.call('PEXPIRE', KEYS[1], ARGV[10])
  return 1
end

local n = tonumber(ARGV[11])
local i = 12
for _ = 1, n do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  i = i + 2
end
while i <= #ARGV do
  redis.call('SADD', KEYS[3], ARGV[i])
  i = i + 1
end
return 1
