-- Agent lifecycle. ARGV: op, agent id, then
--   online: node, groups (JSON array), roster capacity
--   ready: capacity ('' = the roster's)
--   away | disconnected | offline: nothing
local op, id = ARGV[1], ARGV[2]
local ak = key('agent', id)

if op == 'online' then
  local node, groups, cap = ARGV[3], ARGV[4], ARGV[5]
  if redis.call('EXISTS', ak) == 1 then
    local groups = agent_groups(id)
    for _, g in ipairs(groups) do redis.call('SREM', key('group', g), id) end
    unpick(id, groups)
    local old = redis.call('HGET', ak, 'node')
    if old then redis.call('SREM', key('node_agents', old), id) end
  end
  for _, g in ipairs(cjson.decode(groups)) do
    redis.call('SADD', key('group', g), id)
    redis.call('SADD', K_GROUPS, g)
  end
  redis.call('HSET', ak, 'groups', groups, 'roster', cap, 'cap', cap, 'status', 'away', 'node', node)
  redis.call('HSETNX', ak, 'idle', 0)
  redis.call('SADD', K_AGENTS, id)
  redis.call('SADD', key('node_agents', node), id)
  redis.call('ZREM', K_DISC, id)
  return reply('ok')
end

if redis.call('EXISTS', ak) == 0 then
  if op == 'offline' then return reply('ok') end
  return reply('unknown_agent')
end

if op == 'ready' then
  local roster = tonumber(redis.call('HGET', ak, 'roster')) or 0
  local cap = roster
  if ARGV[3] ~= '' then cap = math.min(roster, tonumber(ARGV[3]) or roster) end
  redis.call('HSET', ak, 'cap', num(cap))
  redis.call('ZREM', K_DISC, id)
  if redis.call('HGET', ak, 'status') ~= 'ready' then
    redis.call('HSET', ak, 'status', 'ready', 'idle', next_seq())
  end
  sync_free(id)
  local out = {}
  drain(agent_groups(id), out)
  return reply('ok', {}, out)
elseif op == 'away' then
  redis.call('HSET', ak, 'status', 'away')
  sync_free(id)
  redis.call('ZREM', K_DISC, id)
  return reply('ok')
elseif op == 'disconnected' then
  redis.call('HSET', ak, 'status', 'disconnected')
  sync_free(id)
  redis.call('ZADD', K_DISC, num(NOW), id)
  return reply('ok')
elseif op == 'offline' then
  local tickets, out = {}, {}
  drain(remove_agent(id, tickets), out)
  return reply('ok', {}, out, tickets)
end
return redis.error_reply('kefu dispatch: unknown agent op ' .. tostring(op))
