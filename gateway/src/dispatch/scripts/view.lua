-- Views, atomic. ARGV: 'position', session | 'capacity' | 'snapshot'. They change nothing but
-- the capacity view's shared copy (below).
if ARGV[1] == 'position' then
  local f = redis.call('HMGET', key('t', ARGV[2]), 'group', 'state')
  if f[2] ~= 'q' then return {} end
  return {f[1], redis.call('ZRANK', key('q', f[1]), ARGV[2]) + 1}
end
-- Every node asks for the capacity view once a second, and summing the ready agents' capacity
-- per group (a JSON decode of each agent's groups) took 2-4 ms of Redis at a sale-day peak with
-- 200 agents, every other command (appends, relays) waiting behind it. The first node to ask
-- within CAPACITY_TTL_MS computes it and leaves a copy; the others read the copy. The view is a
-- once-a-second picture (queue gauges, positions, ready capacity), so a copy this old is fine.
local K_CAPACITY = B .. ':view:capacity'
local CAPACITY_TTL_MS = 900
if ARGV[1] == 'capacity' then
  local copy = redis.call('GET', K_CAPACITY)
  if copy then return cjson.decode(copy) end
end
local queues = {}
for _, g in ipairs(redis.call('SMEMBERS', K_GROUPS)) do
  table.insert(queues, g)
  table.insert(queues, redis.call('ZCARD', key('q', g)))
end
-- capacity: { {group, len, ...}, {group, summed capacity of its ready agents, ...} }: what
-- every node asks once a second, without the agents' chat lists (see `Capacity::of`).
if ARGV[1] == 'capacity' then
  local sums, ready = {}, {}
  for _, id in ipairs(redis.call('SMEMBERS', K_AGENTS)) do
    local a = redis.call('HMGET', key('agent', id), 'status', 'cap', 'groups')
    if a[1] == 'ready' then
      for _, g in ipairs(cjson.decode(a[3] or '[]')) do
        sums[g] = (sums[g] or 0) + (tonumber(a[2]) or 0)
      end
    end
  end
  for g, n in pairs(sums) do
    table.insert(ready, g)
    table.insert(ready, num(n))
  end
  local view = {queues, ready}
  redis.call('SET', K_CAPACITY, cjson.encode(view), 'PX', CAPACITY_TTL_MS)
  return view
end
-- snapshot: { {group, len, group, len, ...}, { {id, status, node, cap, roster, groups, s...}, ...} }
local agents = {}
for _, id in ipairs(redis.call('SMEMBERS', K_AGENTS)) do
  local a = redis.call('HMGET', key('agent', id), 'status', 'node', 'cap', 'roster', 'groups')
  local row = {id, a[1] or 'away', a[2] or '', a[3] or '0', a[4] or '0', a[5] or '[]'}
  for _, s in ipairs(redis.call('SMEMBERS', key('chats', id))) do table.insert(row, s) end
  table.insert(agents, row)
end
return {queues, agents}
