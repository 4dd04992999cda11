-- Writes a product's sale into Redis from what MySQL (and the outbox) say, atomically, as a
-- compare-and-set on what the writer read: a writer whose reading is stale loses.
-- Used by warm-up and by the cache-miss rebuild (which holds the product's lock).
--
-- KEYS[1] sale, KEYS[2] buyers, KEYS[3] restored (set of receipts whose unit is back),
-- KEYS[4] staged buyers, KEYS[5] staged restored: the caller wrote the sale's buyers and
--         returned receipts there in chunks just before (short TTL); they are renamed into
--         place here, so no script call carries a large sale's every buyer as arguments.
-- ARGV[1] mode: "if_missing" (rebuild: never overwrite a sale) or "refresh" (warm-up)
-- ARGV[2] the sale's `ver` the writer read together with the outbox ("" = no sale was there)
-- ARGV[3] activity_id ("0" = the product has no activity: a short-lived negative entry)
-- ARGV[4] remaining stock (-1 = unlimited), ARGV[5] starts_at, ARGV[6] ends_at (ms),
-- ARGV[7] per_user_per_min, ARGV[8] rate, ARGV[9] burst, ARGV[10] seq,
-- ARGV[11] ttl of a negative entry (ms), ARGV[12] how long the keys outlive the end (ms),
-- ARGV[13] this write's `ver` (unique per write), ARGV[14] how many buckets the sale has
-- KEYS[6] moves:out, KEYS[7] moves:in: a rebalance's records (sale/rebalance.rs), which belong
--         to the activity written over and go with it
--
-- A sale split into buckets is one call per bucket, each with its part of the stock and the
-- buyers whose bucket it is. The number of buckets of a live activity changes only before it
-- opens (nobody can have bought): a refresh with another number then writes the sale anew.
--
-- Reply: 0 left alone (a sale is there: another caller rebuilt it first)
--        1 written
--        2 the same activity is live: window and limits refreshed, its stock and buyers kept
--        3 stale: the sale changed since the writer read it (derive again, then retry)
--        4 deferred: another activity is live, or starts first; this one replaces it only
--          once that one has ended (Redis' clock, the one buy.lua decides the window by)
local live = redis.call('HMGET', KEYS[1], 'activity_id', 'ver', 'starts_at', 'ends_at', 'buckets')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- The keys expire a while after the sale ends (never sooner than a minute from now).
local expire_at = math.max(tonumber(ARGV[6]) + tonumber(ARGV[12]), now + 60000)

local function done(code)
  redis.call('DEL', KEYS[4], KEYS[5])
  return code
end

if live[1] then
  if ARGV[1] == 'if_missing' then return done(0) end
  local resplit = (tonumber(live[5]) or 1) ~= tonumber(ARGV[14]) and now < tonumber(live[3] or '0')
  if live[1] == ARGV[3] and live[1] ~= '0' and not resplit then
    redis.call('HSET', KEYS[1], 'starts_at', ARGV[5], 'ends_at', ARGV[6], 'per_user_per_min', ARGV[7],
      'rate', ARGV[8], 'burst', ARGV[9], 'expire_at', expire_at)
    for i = 1, 3 do redis.call('PEXPIREAT', KEYS[i], expire_at) end
    for i = 6, 7 do redis.call('PEXPIREAT', KEYS[i], expire_at) end
    return done(2)
  end
  if (live[2] or '') ~= ARGV[2] then return done(3) end
  if live[1] ~= '0' and not (resplit and live[1] == ARGV[3]) then
    local starts, ends = tonumber(live[3]), tonumber(live[4])
    if now < ends and (now >= starts or tonumber(ARGV[5]) >= starts) then return done(4) end
  end
elseif ARGV[2] ~= '' then
  return done(3)
end

redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[6], KEYS[7])
redis.call('HSET', KEYS[1], 'activity_id', ARGV[3], 'stock', ARGV[4], 'starts_at', ARGV[5],
  'ends_at', ARGV[6], 'per_user_per_min', ARGV[7], 'rate', ARGV[8], 'burst', ARGV[9],
  'seq', ARGV[10], 'ver', ARGV[13], 'expire_at', expire_at, 'buckets', ARGV[14])
if ARGV[3] == '0' then
  redis.call('PEXPIRE', KEYS[1], ARGV[11])
  return done(1)
end
if redis.call('EXISTS', KEYS[4]) == 1 then redis.call('RENAME', KEYS[4], KEYS[2]) end
if redis.call('EXISTS', KEYS[5]) == 1 then redis.call('RENAME', KEYS[5], KEYS[3]) end
for i = 1, 3 do redis.call('PEXPIREAT', KEYS[i], expire_at) end
return done(1)
