-- Moves a chat. ARGV: session, 'group' | 'agent', target.
-- To a group: front of its queue, then drain (the old agent's groups and the target group).
-- To an agent: only if it is ready with a free slot; the chat keeps its group.
local s, kind, target = ARGV[1], ARGV[2], ARGV[3]
local t = key('t', s)
local f = redis.call('HMGET', t, 'state', 'agent')
if not f[1] then return reply('unknown_session') end
local from = nil
if f[1] == 'a' then from = f[2] end

local function leave(freed)
  if from then
    redis.call('SREM', key('chats', from), s)
    sync_free(from)
    for _, g in ipairs(agent_groups(from)) do table.insert(freed, g) end
  end
  return freed
end

local out = {}
if kind == 'group' then
  local freed = leave({})
  to_front(s, target)
  table.insert(freed, target)
  drain(freed, out)
  for i, a in ipairs(out) do
    if a[1] == s then
      table.remove(out, i)
      return reply('ok', {'a', unpack(a)}, out)
    end
  end
  return reply('ok', current(s), out)
end

local ak = key('agent', target)
if redis.call('EXISTS', ak) == 0 then return reply('unknown_agent') end
if from == target then return reply('ok', current(s)) end
local a = redis.call('HMGET', ak, 'status', 'cap')
if a[1] ~= 'ready' or redis.call('SCARD', key('chats', target)) >= (tonumber(a[2]) or 0) then
  return reply('agent_unavailable')
end
local freed = leave({})
local res = assign(s, target)
drain(freed, out)
return reply('ok', {'a', unpack(res)}, out)
