# -*- test-case-name: chatd.test.test_fanout -*-
"""
The Lua scripts the Redis fan-out runs, in one place.

Each runs atomically in Redis: nothing another node does can fall between its
steps. The fan-out's tests run a Python twin of each, found by its text, on
their fake Redis; the real-Redis tests are what check the Lua itself.
"""

# The next timestamp of a room: above every one given so far, at least now.
# KEYS: the room's timestamp key; ARGV: now (ms), the room's last timestamp,
# the key's expiry (ms).
TIMESTAMP_SCRIPT = """
local stored = tonumber(redis.call('GET', KEYS[1]) or '0')
local ts = math.max(tonumber(ARGV[1]), tonumber(ARGV[2]) + 1, stored + 1)
redis.call('SET', KEYS[1], string.format('%d', ts), 'PX', ARGV[3])
return string.format('%d', ts)
"""

# Beat and look around: refresh this node's heartbeat, forget the nodes whose
# heartbeat expired, and answer whether ours had survived since the last beat,
# followed by the live node ids.
BEAT_SCRIPT = """
local existed = redis.call('EXISTS', KEYS[2])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('PEXPIRE', KEYS[3], ARGV[4])
redis.call('SADD', KEYS[1], ARGV[1])
local result = {existed}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[3] .. id) == 1 then
    table.insert(result, id)
  else
    redis.call('SREM', KEYS[1], id)
    redis.call('DEL', ARGV[3] .. id .. ':users')
  end
end
return result
"""

# A sliding-window limit: prune, count and add in one step. Times are ms; a
# limit of 0 counts without limit. Answers {1, events before this one} or
# {0, seconds to wait as text}.
RESERVE_SCRIPT = """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local width = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - width)
local count = redis.call('ZCARD', key)
if limit > 0 and count >= limit then
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return {0, string.format('%.3f', tonumber(oldest[2]) + width - now)}
end
redis.call('ZADD', key, now, ARGV[4])
redis.call('PEXPIRE', key, math.ceil(width))
return {1, count}
"""
