"""The Lua scripts of `RedisStreamQueue`: each step of a ticket's life, atomic on the Redis server.

Keys: KEYS[1] the stream, KEYS[2] the per-state counts (hash), KEYS[3] the live tickets by expiry (sorted
set), KEYS[4] the consumer group's XAUTOCLAIM cursor. A ticket is the hash `<stream>:t:<id>`; its field
`entry` is the stream entry that currently carries it (an entry whose ticket points elsewhere is stale).
`<stream>:finished` holds the final tickets' ids scored by their `finished_at`: what purge deletes from."""

from __future__ import annotations

_PRELUDE = """
local S, C, E, CURSOR = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local P = S .. ':t:'
local F = S .. ':finished'
local FINAL = {done = true, failed = true, expired = true, canceled = true}

local function move(h, old, new)
  redis.call('HSET', h, 'state', new)
  redis.call('HINCRBY', C, old, -1)
  redis.call('HINCRBY', C, new, 1)
  if FINAL[new] then redis.call('ZREM', E, redis.call('HGET', h, 'id')) end
end

-- a ticket just became final at `now`: it is purged once `now` is older than the queue's keep
local function finished(h, now)
  redis.call('HSET', h, 'finished_at', now)
  redis.call('ZADD', F, now, redis.call('HGET', h, 'id'))
end

local function ack(h, group)
  local entry = redis.call('HGET', h, 'entry')
  if entry then
    redis.call('XACK', S, group, entry)
    redis.call('XDEL', S, entry)
    redis.call('HDEL', h, 'entry')
  end
end

local function enqueue(h)
  redis.call('HSET', h, 'entry', redis.call('XADD', S, '*', 'ticket', redis.call('HGET', h, 'id')))
end

local function unlease(h)
  redis.call('HDEL', h, 'worker', 'lease_until')
end

-- back to the end of the stream, queued, nobody's
local function back(h, state, group)
  if state ~= 'queued' then move(h, state, 'queued') end
  unlease(h)
  ack(h, group)
  enqueue(h)
end

-- the state of a ticket that is not final yet, else nil
local function live(h)
  local state = redis.call('HGET', h, 'state')
  if not state or FINAL[state] then return nil end
  return state
end

-- the state of a ticket `worker` may end ('' : one nobody leases, e.g. a batch's), else nil
local function owned(h, worker)
  local state = redis.call('HGET', h, 'state')
  if not state then return nil end
  if worker == '' then
    if state == 'queued' or state == 'batched' then return state end
    return nil
  end
  if state == 'running' and redis.call('HGET', h, 'worker') == worker then return state end
  return nil
end

-- ends a ticket as expired, keeping the attempts of its last round
local function expire(h, state, now, group, default)
  local error = default
  local old = redis.call('HGET', h, 'error')
  if old then
    local e = cjson.decode(old)
    e['type'] = 'Expired'
    e['message'] = cjson.decode(default)['message']
    e['status'] = cjson.null
    error = cjson.encode(e)
  end
  move(h, state, 'expired')
  unlease(h)
  redis.call('HSET', h, 'error', error)
  finished(h, now)
  ack(h, group)
end
"""

# ARGV: group, then 11 fields per ticket (id route params created_at expires_at state attempts batch_id
# result error finished_at; '' for none)
PUT = _PRELUDE + """
local i = 2
while i <= #ARGV do
  local id = ARGV[i]
  local h = P .. id
  if redis.call('EXISTS', h) == 0 then
    local state = ARGV[i + 5]
    redis.call('HSET', h, 'id', id, 'route', ARGV[i + 1], 'params', ARGV[i + 2], 'created_at', ARGV[i + 3],
               'expires_at', ARGV[i + 4], 'state', state, 'attempts', ARGV[i + 6])
    local names = {'batch_id', 'result', 'error', 'finished_at'}
    for k = 1, 4 do
      if ARGV[i + 6 + k] ~= '' then redis.call('HSET', h, names[k], ARGV[i + 6 + k]) end
    end
    redis.call('HINCRBY', C, state, 1)
    if not FINAL[state] then redis.call('ZADD', E, ARGV[i + 4], id) end
    if FINAL[state] and ARGV[i + 10] ~= '' then redis.call('ZADD', F, ARGV[i + 10], id) end
    if state == 'queued' then enqueue(h) end
  end
  i = i + 11
end
return 0
"""

# ARGV: group consumer limit lease_until now min_idle_ms routes('*': any, else one per line) budget
# expired_error. Returns the claimed tickets' hashes (HGETALL replies).
CLAIM = _PRELUDE + """
local group, consumer, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local until_, now, idle, budget = ARGV[4], tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[8])
local any = ARGV[7] == '*'
local routes = {}
if not any then
  for r in string.gmatch(ARGV[7], '[^\\n]+') do routes[r] = true end
end
local out = {}

local function take(entry, fields)
  local id = fields and fields[2]
  local h = P .. (id or '')
  local state = id and redis.call('HGET', h, 'state')
  if not state or redis.call('HGET', h, 'entry') ~= entry then  -- a stale entry: its ticket moved on
    redis.call('XACK', S, group, entry)
    redis.call('XDEL', S, entry)
    return
  end
  if state == 'running' then
    if tonumber(redis.call('HGET', h, 'lease_until')) > now then return end  -- its worker still holds it
  elseif state ~= 'queued' then
    return
  end
  if tonumber(redis.call('HGET', h, 'expires_at')) <= now then
    expire(h, state, now, group, ARGV[9])
    return
  end
  if not any and not routes[redis.call('HGET', h, 'route')] then  -- no model of its route can serve now
    back(h, state, group)
    return
  end
  if state == 'queued' then move(h, 'queued', 'running') end
  redis.call('HSET', h, 'worker', consumer, 'lease_until', until_)
  out[#out + 1] = redis.call('HGETALL', h)
end

-- first the entries of consumers that stopped renewing (dead workers), from where the last look ended
local cursor = redis.call('GET', CURSOR) or '0-0'
local reclaimed = redis.call('XAUTOCLAIM', S, group, consumer, idle, cursor, 'COUNT', limit)
redis.call('SET', CURSOR, reclaimed[1])
for _, e in ipairs(reclaimed[2]) do take(e[1], e[2]) end
-- then new entries, in order
local scanned = 0
while #out < limit and scanned < budget do
  local want = limit - #out
  local got = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', want, 'STREAMS', S, '>')
  if not got then break end
  local entries = got[1][2]
  for _, e in ipairs(entries) do
    scanned = scanned + 1
    take(e[1], e[2])
  end
  if #entries < want then break end
end
return out
"""

# ARGV: id worker lease_until group
RENEW = _PRELUDE + """
local h = P .. ARGV[1]
if ARGV[2] == '' or not owned(h, ARGV[2]) then return 0 end
redis.call('HSET', h, 'lease_until', ARGV[3])
local entry = redis.call('HGET', h, 'entry')
if entry then redis.call('XCLAIM', S, ARGV[4], ARGV[2], 0, entry, 'JUSTID') end  -- its idle time starts again
return 1
"""

# ARGV: id worker result now group
FINISH = _PRELUDE + """
local h = P .. ARGV[1]
local state = owned(h, ARGV[2])
if not state then return 0 end
move(h, state, 'done')
redis.call('HDEL', h, 'lease_until')  -- its worker stays: who served it
redis.call('HSET', h, 'result', ARGV[3])
finished(h, ARGV[4])
ack(h, ARGV[5])
return 1
"""

# ARGV: id worker error now final('1'|'0') group expired_error
FAIL = _PRELUDE + """
local h = P .. ARGV[1]
local state = owned(h, ARGV[2])
if not state then return 0 end
redis.call('HINCRBY', h, 'attempts', 1)
redis.call('HSET', h, 'error', ARGV[3])
if ARGV[5] == '1' then
  move(h, state, 'failed')
  unlease(h)
  finished(h, ARGV[4])
  ack(h, ARGV[6])
elseif tonumber(redis.call('HGET', h, 'expires_at')) <= tonumber(ARGV[4]) then
  expire(h, state, ARGV[4], ARGV[6], ARGV[7])
else
  back(h, state, ARGV[6])
end
return 1
"""

# ARGV: id worker group
RELEASE = _PRELUDE + """
local h = P .. ARGV[1]
if ARGV[2] == '' or not owned(h, ARGV[2]) then return 0 end
back(h, 'running', ARGV[3])
return 1
"""

# ARGV: id now group error(used when the ticket has none) · cancel
CANCEL = _PRELUDE + """
local h = P .. ARGV[1]
local state = live(h)
if not state then return 0 end
move(h, state, 'canceled')
unlease(h)
if not redis.call('HGET', h, 'error') then redis.call('HSET', h, 'error', ARGV[4]) end
finished(h, ARGV[2])
ack(h, ARGV[3])
return 1
"""

# ARGV: id group · a batched (or queued) ticket back to the stream
REQUEUE = _PRELUDE + """
local h = P .. ARGV[1]
local state = live(h)
if not state then return 0 end
redis.call('HDEL', h, 'batch_id')
back(h, state, ARGV[2])
return 1
"""

# ARGV: now group expired_error · every live ticket past its expiry, except ones a worker holds
EXPIRE = _PRELUDE + """
local now, n, offset = tonumber(ARGV[1]), 0, 0
while true do
  local ids = redis.call('ZRANGEBYSCORE', E, '-inf', now, 'LIMIT', offset, 500)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    local h = P .. id
    local state = live(h)
    if not state then
      redis.call('ZREM', E, id)
    elseif state == 'running' and tonumber(redis.call('HGET', h, 'lease_until')) > now then
      offset = offset + 1
    else
      expire(h, state, ARGV[1], ARGV[2], ARGV[3])
      n = n + 1
    end
  end
end
return n
"""

# ARGV: batch_id record_json group ticket_ids... · KEYS[5] the batches hash, KEYS[6] the open batches set
SAVE_BATCH = _PRELUDE + """
redis.call('HSET', KEYS[5], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[6], ARGV[1])
for i = 4, #ARGV do
  local h = P .. ARGV[i]
  local state = live(h)
  if state then
    if state ~= 'batched' then move(h, state, 'batched') end
    unlease(h)
    redis.call('HSET', h, 'batch_id', ARGV[1])
    ack(h, ARGV[3])
  end
end
return 0
"""

# ARGV: before limit group · KEYS[5] the batches hash, KEYS[6] the open batches set. Deletes up to `limit`
# final tickets finished before `before`, and the ended batch records of theirs no ticket is left of.
# Returns {tickets deleted, ids looked at}: fewer looked at than `limit` means nothing older is left.
PURGE = _PRELUDE + """
local ids = redis.call('ZRANGEBYSCORE', F, '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local n, batches = 0, {}
for _, id in ipairs(ids) do
  local h = P .. id
  redis.call('ZREM', F, id)
  local state = redis.call('HGET', h, 'state')
  if state and FINAL[state] then  -- else gone already, or the id was put again since: not ours to delete
    local batch = redis.call('HGET', h, 'batch_id')
    if batch then batches[batch] = true end
    ack(h, ARGV[3])
    redis.call('DEL', h)
    redis.call('HINCRBY', C, state, -1)
    n = n + 1
  end
end
for batch in pairs(batches) do
  local raw = redis.call('HGET', KEYS[5], batch)
  if raw and redis.call('SISMEMBER', KEYS[6], batch) == 0 then
    local record, left = cjson.decode(raw), false
    if record['state'] == 'ended' then
      for _, id in ipairs(record['ticket_ids']) do
        if redis.call('EXISTS', P .. id) == 1 then left = true break end
      end
      if not left then redis.call('HDEL', KEYS[5], batch) end
    end
  end
end
return {n, #ids}
"""

# ARGV: ids... · a stream written before purge existed: its final tickets into `<stream>:finished`
INDEX_FINISHED = _PRELUDE + """
for _, id in ipairs(ARGV) do
  local h = P .. id
  local state = redis.call('HGET', h, 'state')
  if state and FINAL[state] then
    local at = redis.call('HGET', h, 'finished_at') or redis.call('HGET', h, 'created_at')
    redis.call('ZADD', F, 'NX', at, id)
  end
end
return 0
"""

SCRIPTS = {"put": PUT, "claim": CLAIM, "renew": RENEW, "finish": FINISH, "fail": FAIL, "release": RELEASE,
           "cancel": CANCEL, "requeue": REQUEUE, "expire": EXPIRE, "save_batch": SAVE_BATCH,
           "purge": PURGE, "index_finished": INDEX_FINISHED}
