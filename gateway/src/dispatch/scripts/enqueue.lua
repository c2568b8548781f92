-- A customer asks for a person. ARGV: session, group, priority, customer node, enqueued_at_ms.
-- Idempotent: a known session keeps its place (only its customer node is updated).
local s, g, prio, node, enq = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local t = key('t', s)
if redis.call('EXISTS', t) == 1 then
  redis.call('HSET', t, 'node', node)
  return reply('ok', current(s))
end
local seq = next_seq()
local qat = tonumber(enq) or 0
if qat == 0 then qat = NOW end
redis.call('HSET', t, 'group', g, 'prio', prio, 'node', node, 'enq', enq, 'seq', num(seq),
  'qat', num(qat), 'state', 'q')
redis.call('SADD', K_GROUPS, g)
-- By the invariant (no queued ticket while an agent of the group is free), customers already
-- waiting mean no agent of the group is free: skip the scan of the group's agents, which at a
-- sale-day peak (thousands queued, a hundred agents a group) is most of the script's work.
local waiting = redis.call('ZCARD', key('q', g))
redis.call('ZADD', key('q', g), num(score(prio, seq, false)), s)
if waiting > 0 then return reply('ok', {'q', g, redis.call('ZRANK', key('q', g), s) + 1}) end
-- Otherwise this ticket is the head, and goes to a free agent if there is one.
local id = pick_agent(g)
if id then return reply('ok', {'a', unpack(assign(s, id))}) end
return reply('ok', {'q', g, redis.call('ZRANK', key('q', g), s) + 1})
