-- One purchase attempt, atomically: one-per-user (a repeat gets its receipt back), sale window,
-- per-user limit, the activity's rate limit across every function instance, decrement, outbox.
-- Every key shares the product's hash tag, so this runs unchanged on Redis Cluster.
--
-- KEYS[1] sale      hash: activity_id, stock (-1 = unlimited), starts_at, ends_at (ms since
--                   epoch), per_user_per_min, rate, burst, seq, ver, expire_at (see load_sale.lua);
--                   tokens, tokens_at: the activity's token bucket (written here only)
-- KEYS[2] buyers    hash: "<activity_id>:<user>" -> receipt
-- KEYS[3] outbox    hash: receipt -> order message (JSON)
-- KEYS[4] outbox:due zset: receipt -> when outbox-retry may resend it (ms since epoch)
-- KEYS[5] rl:<user> per-user attempt counter, one-minute window
-- ARGV[1] user id, ARGV[2] product id, ARGV[3] delay before a resend is due (ms),
-- ARGV[4] how many buckets the caller believes the sale has, ARGV[5] what the receipt's number
-- carries after it (the bucket, see domain/shard.rs), ARGV[6] how long a refill may take (ms)
--
-- Buckets (sale/rebalance.rs): a sale split into N buckets has this hash in each; `buckets` = N,
-- `stock` is this bucket's part, the rate and burst are shared out (rate / N, burst / N). An
-- empty bucket of a split sale does not answer "sold out" until a refill found every bucket
-- empty (`dry_until`): the first caller to find it empty refills it (code 11, holding
-- `refill_until`), the others wait (code 10); neither attempt counts against any limit.
--
-- Reply {code, detail, rate, burst, activity_id}; codes are mapped to an enum in
-- shared/src/redis/scripts/buy.rs only.
--   0 not loaded (caller rebuilds the sale from MySQL)   7 product has no activity
--   1 queued: detail = receipt, [6] = the order message   2 sold out
--   3 already bought: detail = the earlier receipt        4 not started: detail = starts_at
--   5 ended: detail = ends_at                             6 per-user limit: detail = retry in ms
--   8 the activity's rate: detail = retry in ms
--   9 the sale has another number of buckets: detail = that number (ask the right bucket)
--  10 this bucket is empty and being refilled: detail = ms until the refill's lease ends
--  11 this bucket is empty: the caller refills it (it holds the lease), then asks again
local f = redis.call('HMGET', KEYS[1], 'activity_id', 'stock', 'starts_at', 'ends_at',
  'per_user_per_min', 'rate', 'burst', 'expire_at', 'tokens', 'tokens_at', 'buckets',
  'dry_until', 'refill_until')
local activity = f[1]
if not activity then return {0, '', 0, 0} end
if activity == '0' then return {7, '', 0, 0} end
local rate, burst = tonumber(f[6]) or 0, tonumber(f[7]) or 0
local n = tonumber(f[11]) or 1
if n ~= tonumber(ARGV[4]) then return {9, tostring(n), rate, burst, activity} end

-- A repeated buy (the first answer was lost) gets the same receipt back, whenever it comes.
local member = activity .. ':' .. ARGV[1]
local earlier = redis.call('HGET', KEYS[2], member)
if earlier then return {3, earlier, rate, burst, activity} end

-- The server's clock, not the caller's: every function instance sees the same window.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now < tonumber(f[3]) then return {4, f[3], rate, burst, activity} end
if now >= tonumber(f[4]) then return {5, f[4], rate, burst, activity} end

-- Only attempts inside the window count against the user's allowance: clicks before the
-- opening second do not use it up, nor do attempts the activity's rate turns away.
local attempts = tonumber(redis.call('GET', KEYS[5]) or '0')
if attempts >= (tonumber(f[5]) or 5) then
  return {6, tostring(redis.call('PTTL', KEYS[5])), rate, burst, activity}
end

local stock = tonumber(f[2])
if stock == 0 and n > 1 and now >= (tonumber(f[12]) or 0) then
  local lease = tonumber(f[13]) or 0
  if now < lease then return {10, tostring(lease - now), rate, burst, activity} end
  redis.call('HSET', KEYS[1], 'refill_until', now + tonumber(ARGV[6]))
  return {11, '', rate, burst, activity}
end

-- The activity's rate and burst, for every function instance at once: a token bucket in the
-- sale's hash, refilled by Redis' clock. A full bucket when the sale is (re)loaded; a change
-- of rate or burst (a warm-up refresh) applies from the next call. rate 0 = no limit.
if rate > 0 then
  local share = rate / n
  local cap = math.max(math.ceil(burst / n), 1)
  local tokens = tonumber(f[9]) or cap
  local at = tonumber(f[10]) or now
  if now > at then tokens = tokens + (now - at) * share / 1000 end
  if tokens > cap then tokens = cap end
  if tokens < 1 then
    redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'tokens_at', math.max(now, at))
    return {8, tostring(math.ceil((1 - tokens) * 1000 / share)), rate, burst, activity}
  end
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - 1), 'tokens_at', math.max(now, at))
end

attempts = redis.call('INCR', KEYS[5])
if attempts == 1 then redis.call('PEXPIRE', KEYS[5], 60000) end

local number
if stock == -1 then
  number = 'u' .. redis.call('HINCRBY', KEYS[1], 'seq', 1) .. ARGV[5]
elseif stock > 0 then
  redis.call('HINCRBY', KEYS[1], 'stock', -1)
  number = tostring(stock) .. ARGV[5]
else
  return {2, '', rate, burst, activity}
end

local receipt = activity .. '-' .. ARGV[2] .. '-' .. ARGV[1] .. '-' .. number
local message = cjson.encode({
  receipt = receipt, activity_id = tonumber(activity), product_id = tonumber(ARGV[2]),
  user_id = ARGV[1], created_at_ms = now,
})
redis.call('HSET', KEYS[2], member, receipt)
if f[8] then redis.call('PEXPIREAT', KEYS[2], f[8]) end
redis.call('HSET', KEYS[3], receipt, message)
redis.call('ZADD', KEYS[4], now + tonumber(ARGV[3]), receipt)
return {1, receipt, rate, burst, activity, message}
