-- Releases a lock only if this caller still holds it (its token), so a holder whose lock
-- expired never frees the next holder's.
-- KEYS[1] lock, ARGV[1] token. Reply: 1 released, 0 not ours.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
