"""The breaker rules as atomic Lua scripts: one script per decision, on one hash per model, times from Redis.

KEYS[1] is the model's hash, KEYS[2] its probe-lease key; both carry the same {hash tag}, so a model's
keys sit in one Cluster slot. ARGV[1] is the pub/sub channel. Every script reads the server's clock
(`TIME`), never a process's, and returns the model's state afterwards as the same list:

    {answer, token, old, new, state, failures, cooling_until - now, retry_at - now, forced, version,
     holding (a probe token is out)}   (INFO adds: lease key alive, seconds since opened)

Hash fields: s (c | o | h), f (consecutive failures), w (the current open wait), oa / ra (opened /
retry at, server time), pt (token of the current probe lease, "" if none), lt (last token handed out),
cu (cooling until), fo (forced open: 1), v (version, bumped on every change). The rules are
`router.breaker_rules`; tests check these scripts against the same reference model.
"""

from __future__ import annotations

# Shared prologue: the server's time, the hash, and helpers to write and to answer.
_PROLOGUE = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local k, lk, channel = KEYS[1], KEYS[2], ARGV[1]
local keep = tonumber(ARGV[2])
local h = redis.call('HMGET', k, 's', 'f', 'w', 'oa', 'ra', 'pt', 'lt', 'cu', 'fo', 'v')
local s = h[1] or 'c'
local f = tonumber(h[2]) or 0
local w = tonumber(h[3])
local ra = tonumber(h[5])
local pt = h[6] or ''
local cu = tonumber(h[8])
local fo = h[9] or '0'
local v = tonumber(h[10]) or 0
local function save(fields)
  v = v + 1
  fields[#fields + 1] = 'v'
  fields[#fields + 1] = v
  redis.call('HSET', k, unpack(fields))
  if fo == '1' then
    redis.call('PERSIST', k)  -- forced open: for as long as the operator says, not until the keys expire
  else
    redis.call('EXPIRE', k, keep)
  end
  redis.call('PUBLISH', channel, k)
end
local function open(wait, forced)
  s, w, ra, pt = 'o', wait, now + wait, ''
  if forced then fo = '1'; ra = nil end
  save({'s', 'o', 'w', wait, 'oa', now, 'ra', ra or '', 'pt', '', 'fo', fo})
  redis.call('DEL', lk)
end
local function close(reset_timeout, keep_cooling)
  s, f, w, ra, pt, fo = 'c', 0, reset_timeout, nil, '', '0'
  if not keep_cooling then cu = nil end
  save({'s', 'c', 'f', 0, 'w', reset_timeout, 'oa', '', 'ra', '', 'pt', '', 'fo', '0', 'cu', cu or ''})
  redis.call('DEL', lk)
end
local function answer(a, token, old, new)
  local cooling = ''
  if cu and now < cu then cooling = tostring(cu - now) end
  local retry = ''
  if ra then retry = tostring(ra - now) end
  local holding = '0'
  if pt ~= '' then holding = '1' end
  return {a, token or '', old or '', new or '', s, f, cooling, retry, fo, v, holding}
end
"""

# ARGV: channel, keep, lease_ttl_ms, reset_timeout, max_reset_timeout
ADMIT = _PROLOGUE + r"""
local ttl_ms, reset_timeout, max_reset = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local cooling = cu and now < cu
if s == 'c' then
  if cooling then return answer('cooling') end
  return answer('permit')
end
if fo == '1' or (ra and now < ra) then return answer('open') end
if pt ~= '' then
  if redis.call('EXISTS', lk) == 1 then return answer('open') end
  open(math.min((w or reset_timeout) * 2, max_reset))
  return answer('open', nil, 'half_open', 'open')
end
if cooling then return answer('cooling') end
local token = tostring(redis.call('HINCRBY', k, 'lt', 1))
redis.call('SET', lk, token, 'PX', ttl_ms)
local old = s
s, pt = 'h', token
save({'s', 'h', 'pt', token})
if old == 'o' then return answer('lease', token, 'open', 'half_open') end
return answer('lease', token)
"""

# ARGV: channel, keep, token ("" when not a probe), reset_timeout
SUCCESS = _PROLOGUE + r"""
local token, reset_timeout = ARGV[3], tonumber(ARGV[4])
if token == '' then
  if s == 'c' and f > 0 then
    f = 0
    save({'f', 0})
  end
  return answer('ok')
end
-- As in the rules: the probe holds its token until another admit reopens the breaker (a success that
-- lands just after the lease key expired, before anyone asked, still closes it).
if s ~= 'h' or pt ~= token then return answer('stale') end
close(reset_timeout, true)
return answer('ok', nil, 'half_open', 'closed')
"""

# ARGV: channel, keep, token, failure_threshold, reset_timeout, max_reset_timeout
FAILURE = _PROLOGUE + r"""
local token, threshold = ARGV[3], tonumber(ARGV[4])
local reset_timeout, max_reset = tonumber(ARGV[5]), tonumber(ARGV[6])
if token ~= '' then
  if s ~= 'h' or pt ~= token then return answer('open') end
  open(math.min((w or reset_timeout) * 2, max_reset))
  return answer('open', nil, 'half_open', 'open')
end
if s ~= 'c' then return answer('open') end
f = f + 1
if f < threshold then
  save({'f', f})
  return answer('counted')
end
save({'f', f})
open(reset_timeout)
return answer('open', nil, 'closed', 'open')
"""

# ARGV: channel, keep, token
RELEASE = _PROLOGUE + r"""
local token = ARGV[3]
if token ~= '' and pt == token then
  pt = ''
  save({'pt', ''})
  if redis.call('GET', lk) == token then redis.call('DEL', lk) end
end
return answer('ok')
"""

# ARGV: channel, keep, seconds
COOL_DOWN = _PROLOGUE + r"""
local until_ = now + tonumber(ARGV[3])
if not cu or until_ > cu then
  cu = until_
  save({'cu', cu})
end
return answer('ok')
"""

# ARGV: channel, keep, action (reset | force_open | force_close), reset_timeout
OPERATE = _PROLOGUE + r"""
local action, reset_timeout = ARGV[3], tonumber(ARGV[4])
local old = s
if action == 'force_open' then
  open(w or reset_timeout, true)
else
  close(reset_timeout, action == 'force_close')
end
local names = {c = 'closed', o = 'open', h = 'half_open'}
if names[old] ~= names[s] then return answer('ok', nil, names[old], names[s]) end
return answer('ok')
"""

# ARGV: channel, keep
INFO = _PROLOGUE + r"""
local probing = '0'
if redis.call('EXISTS', lk) == 1 then probing = '1' end
local oa = ''
if h[4] and h[4] ~= '' then oa = tostring(now - tonumber(h[4])) end
local a = answer('info')
a[12] = probing
a[13] = oa
return a
"""

# ARGV: channel, keep, failure_threshold, reset_timeout. A closed breaker opens as if its failures had
# reached the threshold; any other (open, half-open, forced) is left as it is.
TRIP = _PROLOGUE + r"""
local threshold, reset_timeout = tonumber(ARGV[3]), tonumber(ARGV[4])
if s ~= 'c' or fo == '1' then return answer('kept') end
f = threshold
save({'f', f})
open(reset_timeout)
return answer('tripped', nil, 'closed', 'open')
"""
