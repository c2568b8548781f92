-- A returning customer offered to their last agent first (issue #17). ARGV: session, group,
-- priority, customer node, enqueued_at_ms, agent. Assigns only if the agent is a member of the
-- group, ready, with a free slot (never over capacity); otherwise nothing changes and the reply
-- says why: {'busy'} (ready but full) or {'unavailable'}. A known session: {'known', <current>}.
local s, g, prio, node, enq, id = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local t = key('t', s)
if redis.call('EXISTS', t) == 1 then
  redis.call('HSET', t, 'node', node)
  local cur = current(s)
  table.insert(cur, 1, 'known')
  return reply('ok', cur)
end
if redis.call('SISMEMBER', key('group', g), id) == 0 then return reply('ok', {'unavailable'}) end
local a = redis.call('HMGET', key('agent', id), 'status', 'cap')
if a[1] ~= 'ready' then return reply('ok', {'unavailable'}) end
if redis.call('SCARD', key('chats', id)) >= (tonumber(a[2]) or 0) then
  return reply('ok', {'busy'})
end
local seq = next_seq()
local qat = tonumber(enq) or 0
if qat == 0 then qat = NOW end
redis.call('HSET', t, 'group', g, 'prio', prio, 'node', node, 'enq', enq, 'seq', num(seq),
  'qat', num(qat), 'state', 'q')
redis.call('SADD', K_GROUPS, g)
return reply('ok', {'a', unpack(assign(s, id))})
