// The agent console: sign in with the agent token, go ready or away, serve several chats.
//
// Like the widget, the screen is drawn from a journal (sessionStorage) of the frames received
// and the agent's own messages, so a reload redraws the same chats; the socket reconnects by
// itself with `last_seq`, and unacknowledged replies are re-sent (the server dedupes by id).

import { Journal, newId } from '/shared/journal.js';
import { ResumableSocket, wsBase } from '/shared/socket.js';
import { upload } from '/shared/rich.js';
import { ChatCard } from './chat.js';

const TOKEN_KEY = 'kefu.console.token';
// Two-step sign-in: the pass the server gives after a good code, so reconnects (and reloads in
// this tab) do not ask for a new code until it expires.
const PASS_KEY = 'kefu.console.otp_session';
const TYPING_EVERY_MS = 2000;
const $ = (id) => document.getElementById(id);

const journal = new Journal('kefu.console', 2000);
let config = { canned_replies: [], groups: [], agent_grace_ms: 30000 };
let socket = null;
let chats = new Map(); // session → ChatCard
let replaying = false;
let lastTyping = 0;
let pendingCode = ''; // a code typed for the next connection only

main();

async function main() {
  $('signin').addEventListener('submit', (e) => {
    e.preventDefault();
    signIn($('token').value.trim());
  });
  $('otp').addEventListener('submit', (e) => {
    e.preventDefault();
    const token = sessionStorage.getItem(TOKEN_KEY);
    pendingCode = $('otp-code').value.trim();
    $('otp-code').value = '';
    if (token && pendingCode) start(token);
    else showSignIn('');
  });
  $('signout').addEventListener('click', signOut);
  $('ready').addEventListener('click', () => setPresence('ready'));
  $('away').addEventListener('click', () => setPresence('away'));
  try {
    const response = await fetch('/console/config.json', { cache: 'no-cache' });
    if (response.ok) config = { ...config, ...(await response.json()) };
  } catch {
    // Without it there are no canned replies or transfer groups; chatting still works.
  }
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) start(token);
  else showSignIn('');
}

function showSignIn(error) {
  $('desk').hidden = true;
  $('otp').hidden = true;
  $('signin').hidden = false;
  $('signin-error').textContent = error;
  $('token').focus();
}

function signIn(token) {
  if (!token) return;
  journal.reset({ keepExtra: false });
  sessionStorage.removeItem(PASS_KEY);
  sessionStorage.setItem(TOKEN_KEY, token);
  start(token);
}

/** The server wants the code (`otp_required`) or refused one (`bad_otp`). */
function askCode(code) {
  socket?.stop();
  sessionStorage.removeItem(PASS_KEY);
  $('desk').hidden = true;
  $('signin').hidden = true;
  $('otp').hidden = false;
  $('otp-error').textContent = code === 'bad_otp'
    ? '验证码错误或已使用 · Wrong or already used code' : '';
  $('otp-code').focus();
}

function signOut() {
  socket?.stop();
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(PASS_KEY);
  journal.reset({ keepExtra: false });
  chats.forEach((c) => c.el.remove());
  chats = new Map();
  renderChrome();
  showSignIn('');
}

function start(token) {
  $('signin').hidden = true;
  $('otp').hidden = true;
  $('desk').hidden = false;
  redraw();
  socket = new ResumableSocket({
    url: () => url(token),
    journal,
    onFrame: receive,
    onStatus: status,
  });
  socket.start();
}

function url(token) {
  // After the gateway's agent grace period the server has forgotten this agent's numbered
  // frames (its chats went back to the queue): start from scratch rather than skip frames.
  const seen = journal.extra.seenAt || 0;
  if (journal.lastSeq > 0 && Date.now() - seen > config.agent_grace_ms * 0.8) {
    const keep = { status: journal.extra.status };
    journal.reset({ keepExtra: false });
    Object.assign(journal.extra, keep);
    redraw();
  }
  const q = new URLSearchParams({ token, last_seq: String(journal.lastSeq) });
  const pass = sessionStorage.getItem(PASS_KEY);
  if (pendingCode) q.set('otp', pendingCode);
  else if (pass) q.set('otp_session', pass);
  pendingCode = '';
  return `${wsBase(location.origin)}/ws/agent?${q}`;
}

function status(state, info) {
  const conn = $('conn');
  conn.dataset.state = state;
  if (state === 'open') {
    conn.textContent = '已连接 · connected';
    touch();
    // A reconnected agent starts `away` on the server; restore what the agent chose.
    if (journal.extra.status === 'ready') socket.send({ type: 'ready' });
  } else if (state === 'closed' && !info.everOpened) {
    // Refused before the upgrade (401): the token is wrong.
    socket.stop();
    sessionStorage.removeItem(TOKEN_KEY);
    showSignIn('登录失败：令牌无效 · Sign-in failed: bad token (or the gateway is unreachable)');
  } else {
    conn.textContent = state === 'closed' ? '连接已断开，正在重连… · reconnecting…' : '连接中… · connecting…';
  }
}

function touch() {
  journal.extra.seenAt = Date.now();
  journal.save();
}
setInterval(() => socket?.isOpen && touch(), 5000);

function setPresence(wanted) {
  journal.extra.status = wanted;
  journal.save();
  socket?.send({ type: wanted });
  renderChrome();
}

// ---- frames ---------------------------------------------------------------------------------

function receive(frame) {
  if (frame.type === 'otp_session') {
    sessionStorage.setItem(PASS_KEY, frame.otp_session);
    return;
  }
  if (frame.type === 'error' && (frame.code === 'otp_required' || frame.code === 'bad_otp')) {
    return askCode(frame.code);
  }
  touch();
  switch (frame.type) {
    case 'typing':
      return chats.get(frame.session)?.typing();
    case 'ack':
      return settle(frame.id, 'sent');
    case 'error':
      if (frame.id) settle(frame.id, 'failed');
      break;
    default:
  }
  journal.append({ k: 'in', f: frame });
  draw({ k: 'in', f: frame });
}

function settle(id, state) {
  const entry = journal.entries.find((e) => e.k === 'out' && e.id === id);
  if (!entry) return;
  entry.state = state;
  journal.save();
  chats.get(entry.session)?.settle(id, state);
}

/** A photo or file for `session`: uploaded with the agent's token, then sent as a message
 * whose id was chosen first (a re-send after a reconnect is the same message). */
function sendAttachment(session, file) {
  const id = newId('a');
  const entry = { k: 'out', session, id, text: '', state: 'sending', file: { name: file.name } };
  journal.append(entry);
  draw(entry);
  const token = sessionStorage.getItem(TOKEN_KEY) || '';
  upload(location.origin, session, file, ['Authorization', `Bearer ${token}`])
    .then((answer) => {
      entry.file.attachment = answer.attachment_id;
      journal.save();
      socket.sendReliable({ type: 'message', session, id, text: '', attachment: answer.attachment_id });
    })
    .catch((err) => {
      settle(id, 'failed');
      $('notice').textContent = `upload: ${err.message}`;
    });
}

function sendMessage(session, text) {
  const id = newId('a');
  const entry = { k: 'out', session, id, text, state: 'sending' };
  journal.append(entry);
  draw(entry);
  socket.sendReliable({ type: 'message', session, id, text });
}

/** Sends one of the customer's orders as an order card (re-sent until acknowledged). */
function sendCard(session, card) {
  const id = newId('a');
  const entry = { k: 'out', session, id, text: `[订单 ${card.order_no}]`, card, state: 'sending' };
  journal.append(entry);
  draw(entry);
  socket.sendReliable({ type: 'card', session, id, card });
}

function redraw() {
  chats.forEach((c) => c.el.remove());
  $('tabs').replaceChildren();
  chats = new Map();
  replaying = true;
  for (const entry of journal.entries) draw(entry);
  replaying = false;
  renderChrome();
}

/** Draws one journal entry; the same code runs live and when redrawing after a reload. */
function draw(entry) {
  if (entry.k === 'out') {
    const card = chats.get(entry.session);
    const label = entry.file ? `📎 ${entry.file.name}` : entry.text;
    const item = card?.line('agent', label, { id: entry.id, rich: entry.card ? { card: entry.card } : undefined });
    if (item && entry.state !== 'sending') card.settle(entry.id, entry.state);
    return;
  }
  if (entry.k === 'dismiss') return removeChat(entry.session);
  const f = entry.f;
  const card = f.session ? chats.get(f.session) : null;
  switch (f.type) {
    case 'welcome':
      journal.extra.me = { name: f.name, agent: f.agent, groups: f.groups, capacity: f.capacity };
      break;
    case 'assigned':
      addChat(f);
      break;
    case 'message':
      card?.line('customer', f.text, { rich: f });
      if (!replaying) card?.bump();
      break;
    case 'auto_greeting':
      card?.line('agent', f.text, { note: '自动问候 auto greeting' });
      card?.setSla(null);
      break;
    case 'sla_warning':
      card?.setSla(f.waiting_s);
      if (!replaying) card?.bump();
      break;
    case 'customer_left':
      card?.end('客户已离开 · the customer left');
      break;
    case 'history':
      card?.showHistory(f, (page) => socket.send({ type: 'history_request', session: f.session, page }));
      break;
    case 'orders':
      card?.showOrders(f, (c) => sendCard(f.session, c));
      break;
    case 'chat_ended':
      card?.end(f.reason === 'transferred' ? '已转接 · transferred' : '会话已结束 · closed');
      break;
    case 'error':
      if (!replaying) $('notice').textContent = `${f.code}: ${f.message}`;
      break;
    default:
  }
  renderChrome();
}

function addChat(f) {
  chats.get(f.session)?.el.remove();
  const session = f.session;
  const card = new ChatCard(f, {
    canned: config.canned_replies,
    groups: config.groups,
    onSend: (text) => {
      sendMessage(session, text);
      card.setSla(null);
    },
    onAttach: (file) => sendAttachment(session, file),
    onTyping: () => {
      if (Date.now() - lastTyping < TYPING_EVERY_MS) return;
      lastTyping = Date.now();
      socket.sendVolatile({ type: 'typing', session });
    },
    onTransfer: (group) => socket.send({ type: 'transfer', session, group }),
    onClose: () => socket.send({ type: 'close', session }),
    onHistory: (page) => socket.send({ type: 'history_request', session, page }),
    onOrders: () => socket.send({ type: 'orders_request', session }),
    onDismiss: () => {
      removeChat(session);
      // Nothing of an ended chat is needed any more: keep the journal small.
      journal.retain((e) => (e.session || e.f?.session) !== session);
      renderChrome();
    },
  });
  chats.set(session, card);
  $('chats').append(card.el);
  $('tabs').append(card.tab);
  if (!replaying) card.bump();
  // The shop's orders beside the chat (each read is audited; a reload redraws the answer).
  if (!replaying && f.customer?.identified) socket.send({ type: 'orders_request', session });
}

function removeChat(session) {
  const card = chats.get(session);
  if (!card) return;
  card.el.remove();
  card.tab.remove();
  chats.delete(session);
}

function renderChrome() {
  const me = journal.extra.me;
  $('me-name').textContent = me ? `${me.name} (${me.agent})` : '';
  $('me-groups').textContent = me ? me.groups.join(' · ') : '';
  const ready = journal.extra.status === 'ready';
  $('ready').setAttribute('aria-pressed', String(ready));
  $('away').setAttribute('aria-pressed', String(!ready));
  const active = [...chats.values()].filter((c) => !c.ended).length;
  $('load').textContent = me ? `接待中 ${active}/${me.capacity} · chats` : '';
  $('empty').hidden = chats.size > 0;
  const unread = [...chats.values()].reduce((n, c) => n + c.unread, 0);
  document.title = `${unread ? `(${unread}) ` : ''}客服工作台 · kefu agent console`;
}
