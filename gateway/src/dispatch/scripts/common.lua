-- Prepended to every dispatch script; mirrors gateway/src/dispatch/memory/state.rs step by step.
--
-- KEYS[1] is the base `{<prefix>}`. Every key below is derived from it, so all of them hash to
-- the same Redis Cluster slot and the client routes the script to the node owning that slot.
-- (Keys are built inside the script rather than all declared in KEYS because which agents and
-- queues an assignment touches is only known while it runs; with a single hash tag this is safe.)
local B = KEYS[1]
local function key(kind, id) return B .. ':' .. kind .. ':' .. id end
local K_SEQ = B .. ':seq'         -- INCR: arrival and idle order (strict, clock-free)
local K_AGENTS = B .. ':agents'   -- SET of agent ids
local K_GROUPS = B .. ':groups'   -- SET of every group seen
local K_NODES = B .. ':nodes'     -- ZSET node -> liveness expiry (ms)
local K_DISC = B .. ':disc'       -- ZSET agent -> disconnected at (ms)

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local NOW = now_ms()

-- Integers as exact decimal strings (tostring would use %.14g and lose digits).
local function num(n) return string.format('%.0f', n) end

local function next_seq() return redis.call('INCR', K_SEQ) end

-- Queue score, see `queue_score` in dispatch/mod.rs: band * 2^42 + [2^41 if fresh] + seq.
local BAND, FRESH, MAXP = 4398046511104, 2199023255552, 15
local function score(prio, seq, front)
  local s = (MAXP - math.min(tonumber(prio) or 0, MAXP)) * BAND + seq
  if not front then s = s + FRESH end
  return s
end

local function reply(status, result, assigns, tickets)
  return {status, result or {}, assigns or {}, tickets or {}}
end

local function agent_groups(id)
  local g = redis.call('HGET', key('agent', id), 'groups')
  if not g then return {} end
  return cjson.decode(g)
end

-- `{p}:pick:<g>`: the agents of group g that are ready with a free slot, in the order pick_agent
-- takes them, so a pick is one ZRANGE. Score: load / capacity (IEEE division is correctly
-- rounded, so equal ratios give equal scores and, for capacities below 2^26, different ratios
-- keep their order: the same as the memory backend's cross-multiplication). Member:
-- `<idle seq, 20 digits>:<id>`, so among equal loads the agent idle longest, then the lowest
-- id, comes first (members of one score are ordered bytewise). The agent's current member is
-- kept in its hash (`pick`) so a change replaces it.
--
-- Why: at a sale-day peak a plain set of free agents had to be scanned (two calls per agent)
-- on every enqueue that found no queue, ~0.2-0.6 ms of Redis per call, the largest single
-- cost in Redis, and every PUBLISH and log append waited behind it. Kept in step by sync_free
-- wherever an agent's status, capacity, idle order or chats change.
local IDLE_DIGITS = 20
local function pick_member(idle, id) return string.format('%020d', idle) .. ':' .. id end
local function pick_id(member) return string.sub(member, IDLE_DIGITS + 2) end

-- The agent's entry in the pick sets as it should be now: member and score, or nil if the
-- agent must not get a chat (not ready, or full).
local function pick_entry(id)
  local a = redis.call('HMGET', key('agent', id), 'status', 'cap', 'idle')
  local cap = tonumber(a[2]) or 0
  if a[1] ~= 'ready' or cap <= 0 then return nil end
  local load = redis.call('SCARD', key('chats', id))
  if load >= cap then return nil end
  return pick_member(tonumber(a[3]) or 0, id), string.format('%.17g', load / cap)
end

-- Takes agent id out of the pick sets of `groups` (its entry as last recorded).
local function unpick(id, groups)
  local old = redis.call('HGET', key('agent', id), 'pick')
  if not old then return end
  for _, g in ipairs(groups) do redis.call('ZREM', key('pick', g), old) end
  redis.call('HDEL', key('agent', id), 'pick')
end

local function sync_free(id)
  local groups = agent_groups(id)
  local member, score = pick_entry(id)
  local old = redis.call('HGET', key('agent', id), 'pick')
  for _, g in ipairs(groups) do
    if old and old ~= member then redis.call('ZREM', key('pick', g), old) end
    if member then redis.call('ZADD', key('pick', g), score, member) end
  end
  if member then
    if old ~= member then redis.call('HSET', key('agent', id), 'pick', member) end
  elseif old then
    redis.call('HDEL', key('agent', id), 'pick')
  end
end

local function ticket_tuple(s)
  local f = redis.call('HMGET', key('t', s), 'group', 'prio', 'node', 'enq')
  return {s, f[1] or '', f[2] or '0', f[3] or '', f[4] or '0'}
end

-- Where a known session is: {'q', group, position} or {'a', <assignment tuple>}.
local function current(s)
  local f = redis.call('HMGET', key('t', s), 'group', 'node', 'state', 'agent', 'waited')
  if f[3] == 'q' then
    return {'q', f[1], redis.call('ZRANK', key('q', f[1]), s) + 1}
  end
  local anode = redis.call('HGET', key('agent', f[4]), 'node') or ''
  return {'a', s, f[4], f[1], f[2] or '', anode, f[5] or '0'}
end

-- The free ready agent of group g that should get the next chat: least load/capacity, then
-- idle longest (lowest idle seq), then lowest id: the head of the group's pick set. The head
-- is checked against the agent's state; an entry that is out of step is corrected and the
-- next head taken, so a stale entry can cost a retry but never an assignment over capacity.
local function pick_agent(g)
  local pk = key('pick', g)
  for _ = 1, redis.call('ZCARD', pk) do
    local h = redis.call('ZRANGE', pk, 0, 0, 'WITHSCORES')
    if #h == 0 then return nil end
    local id = pick_id(h[1])
    local member, score = pick_entry(id)
    if member == h[1] and tonumber(score) == tonumber(h[2]) then return id end
    redis.call('ZREM', pk, h[1])
    sync_free(id)
  end
  return nil
end

-- Hands ticket s to agent id; returns the assignment tuple.
local function assign(s, id)
  local t = key('t', s)
  local f = redis.call('HMGET', t, 'group', 'node', 'qat')
  redis.call('ZREM', key('q', f[1]), s)
  redis.call('SADD', key('chats', id), s)
  redis.call('HSET', key('agent', id), 'idle', next_seq())
  sync_free(id)
  local waited = math.max(0, NOW - (tonumber(f[3]) or NOW))
  redis.call('HSET', t, 'state', 'a', 'agent', id, 'waited', num(waited))
  local anode = redis.call('HGET', key('agent', id), 'node') or ''
  return {s, id, f[1], f[2] or '', anode, num(waited)}
end

-- Assigns queue heads of `groups` until each is empty or has no free agent; among several
-- groups the head with the lowest score goes first. Appends assignment tuples to `out`.
local function drain(groups, out)
  local pending = {}
  for _, g in ipairs(groups) do pending[g] = true end
  while true do
    local bg, bs, bsc
    for g in pairs(pending) do
      local h = redis.call('ZRANGE', key('q', g), 0, 0, 'WITHSCORES')
      if #h > 0 then
        local sc = tonumber(h[2])
        if bsc == nil or sc < bsc or (sc == bsc and g < bg) then bg, bs, bsc = g, h[1], sc end
      end
    end
    if bg == nil then return end
    local id = pick_agent(bg)
    if id then table.insert(out, assign(bs, id)) else pending[bg] = nil end
  end
end

-- Puts ticket s (queued or assigned) at the front of group g (default: its own group).
-- Does not touch the previous agent's chat set. Returns the ticket tuple.
local function to_front(s, g)
  local t = key('t', s)
  local f = redis.call('HMGET', t, 'group', 'prio', 'seq', 'state')
  if f[4] == 'q' then redis.call('ZREM', key('q', f[1]), s) end
  local grp = f[1]
  if g then
    grp = g
    redis.call('HSET', t, 'group', g)
    redis.call('SADD', K_GROUPS, g)
  end
  redis.call('ZADD', key('q', grp), num(score(f[2], tonumber(f[3]) or 0, true)), s)
  redis.call('HSET', t, 'state', 'q', 'qat', num(NOW))
  redis.call('HDEL', t, 'agent', 'waited')
  return ticket_tuple(s)
end

-- Forgets agent id, requeues its chats at the front (tuples appended to `tickets` in arrival
-- order) and returns the groups to drain.
local function remove_agent(id, tickets)
  local ak = key('agent', id)
  if redis.call('EXISTS', ak) == 0 then return {} end
  local node = redis.call('HGET', ak, 'node')
  local served = agent_groups(id)
  for _, g in ipairs(served) do redis.call('SREM', key('group', g), id) end
  unpick(id, served)
  local chats = {}
  for _, s in ipairs(redis.call('SMEMBERS', key('chats', id))) do
    local seq = tonumber(redis.call('HGET', key('t', s), 'seq'))
    if seq then table.insert(chats, {seq, s}) end
  end
  table.sort(chats, function(a, b) return a[1] < b[1] end)
  local groups = {}
  for _, c in ipairs(chats) do
    local t = to_front(c[2], nil)
    table.insert(groups, t[2])
    table.insert(tickets, t)
  end
  redis.call('DEL', ak, key('chats', id))
  redis.call('SREM', K_AGENTS, id)
  if node then redis.call('SREM', key('node_agents', node), id) end
  redis.call('ZREM', K_DISC, id)
  return groups
end
