-- Node liveness. ARGV: 'heartbeat', node, ttl_ms | 'reap', grace_ms.
-- A node is alive while `{p}:node:<id>` exists (SET PX ttl); `{p}:nodes` remembers when it
-- expires so the grace period can be counted from there.
if ARGV[1] == 'heartbeat' then
  redis.call('SET', key('node', ARGV[2]), '1', 'PX', ARGV[3])
  redis.call('ZADD', K_NODES, num(NOW + tonumber(ARGV[3])), ARGV[2])
  return reply('ok')
end

local limit = num(NOW - tonumber(ARGV[2]))
local gone = {}
for _, n in ipairs(redis.call('ZRANGEBYSCORE', K_NODES, '-inf', limit)) do
  if redis.call('EXISTS', key('node', n)) == 0 then
    redis.call('ZREM', K_NODES, n)
    for _, id in ipairs(redis.call('SMEMBERS', key('node_agents', n))) do gone[id] = true end
    redis.call('DEL', key('node_agents', n))
  end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', K_DISC, '-inf', limit)) do gone[id] = true end
local ids = {}
for id in pairs(gone) do table.insert(ids, id) end
table.sort(ids)
local tickets, groups, out = {}, {}, {}
for _, id in ipairs(ids) do
  for _, g in ipairs(remove_agent(id, tickets)) do table.insert(groups, g) end
end
drain(groups, out)
return reply('ok', {}, out, tickets)
