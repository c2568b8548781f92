-- A chat ends. ARGV: op ('release' | 'cancel'), session, agent (release only).
-- release: the session must be assigned to that agent; cancel: wherever it is.
-- Unknown session: no-op (already ended).
local op, s = ARGV[1], ARGV[2]
local t = key('t', s)
local f = redis.call('HMGET', t, 'group', 'state', 'agent')
if not f[2] then return reply('ok') end
if op == 'release' and (f[2] ~= 'a' or f[3] ~= ARGV[3]) then return reply('not_assigned') end
redis.call('DEL', t)
if f[2] == 'q' then
  redis.call('ZREM', key('q', f[1]), s)
  return reply('ok')
end
redis.call('SREM', key('chats', f[3]), s)
sync_free(f[3])
local out = {}
drain(agent_groups(f[3]), out)
return reply('ok', {}, out)
