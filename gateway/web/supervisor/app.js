// Supervisor view: polls GET /admin/supervisor (bearer admin token) every 1.5 s and draws the
// queues, the agents and the SLA figures, and listens on /ws/supervisor for alerts (new
// sign-ins, blocked leaks). The token is kept in sessionStorage only.
//
// Two-step sign-in: when the server answers `otp_required` (or `bad_otp`) the form asks for
// the 6-digit code, trades it once for a pass (POST /admin/otp-session) and sends the pass
// with every poll (X-Kefu-OTP-Session) and on the alerts socket, until it expires.

import { el } from '/shared/dom.js';
import { wsBase } from '/shared/socket.js';

const TOKEN_KEY = 'kefu.supervisor.token';
const PASS_KEY = 'kefu.supervisor.otp_session';
const MAX_ALERTS = 50;
const POLL_MS = 1500;
const LONG_WAIT_S = 60;
const $ = (id) => document.getElementById(id);

let timer = null;
let lastOk = 0;
let alerts = null; // the alerts socket
let alertsTriedAt = 0;

$('signin').addEventListener('submit', async (e) => {
  e.preventDefault();
  const token = $('token').value.trim();
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  const code = $('otp-code').value.trim();
  $('otp-code').value = '';
  if (!$('otp-field').hidden && code) {
    const response = await fetch('/admin/otp-session', {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'X-Kefu-OTP': code },
      cache: 'no-store',
    });
    if (!response.ok) return refused(response);
    const { otp_session: pass } = await response.json();
    if (pass) sessionStorage.setItem(PASS_KEY, pass);
  }
  start();
});
$('signout').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(PASS_KEY);
  stop('');
});

if (sessionStorage.getItem(TOKEN_KEY)) start();
else stop('');

function start() {
  $('signin').hidden = true;
  $('board').hidden = false;
  clearTimeout(timer);
  poll();
}

function stop(error) {
  clearTimeout(timer);
  alerts?.close();
  alerts = null;
  $('board').hidden = true;
  $('signin').hidden = false;
  $('signin-error').textContent = error;
  $('token').focus();
}

async function poll() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return;
  try {
    const headers = { Authorization: `Bearer ${token}` };
    const pass = sessionStorage.getItem(PASS_KEY);
    if (pass) headers['X-Kefu-OTP-Session'] = pass;
    const response = await fetch('/admin/supervisor', { headers, cache: 'no-store' });
    if (response.status === 401 || response.status === 403) return refused(response);
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    render(await response.json());
    lastOk = Date.now();
    listen(token);
  } catch (err) {
    // Keep the last figures on screen, marked stale, and keep trying.
    const updated = $('updated');
    updated.dataset.stale = 'true';
    updated.textContent = `更新失败 · update failed (${err.message}); ${lastOk ? `last ${new Date(lastOk).toLocaleTimeString()}` : ''}`;
  }
  timer = setTimeout(poll, POLL_MS);
}

/** A refusal: a code is needed (keep the token, ask for it) or the token is bad. */
async function refused(response) {
  const text = await response.text();
  sessionStorage.removeItem(PASS_KEY);
  const needsCode = text.startsWith('otp_required') || text.startsWith('bad_otp');
  $('otp-field').hidden = !needsCode;
  if (!needsCode) sessionStorage.removeItem(TOKEN_KEY);
  stop(needsCode && text.startsWith('otp_required')
    ? '请输入验证码 · Enter the 6-digit code'
    : `${response.status}: ${text}`);
  if (needsCode) {
    $('token').value = sessionStorage.getItem(TOKEN_KEY) || '';
    $('otp-code').focus();
  }
}

/** Opens the alerts socket if it is not open (retried at most every 5 s). */
function listen(token) {
  if (alerts || Date.now() - alertsTriedAt < 5000) return;
  alertsTriedAt = Date.now();
  const q = new URLSearchParams({ token });
  const pass = sessionStorage.getItem(PASS_KEY);
  if (pass) q.set('otp_session', pass);
  const ws = new WebSocket(`${wsBase(location.origin)}/ws/supervisor?${q}`);
  alerts = ws;
  ws.onopen = () => { $('alerts-state').textContent = '实时 · live'; };
  ws.onmessage = (event) => {
    try {
      const frame = JSON.parse(event.data);
      if (frame.type === 'alert') showAlert(frame);
    } catch {
      // the server only sends JSON
    }
  };
  ws.onclose = () => {
    if (alerts === ws) alerts = null;
    $('alerts-state').textContent = '未连接 · not connected';
  };
}

function showAlert(a) {
  let text;
  if (a.kind === 'new_sign_in') {
    const what = [a.new_ip ? '新地址 new address' : '', a.new_user_agent ? '新浏览器 new browser' : '']
      .filter(Boolean).join(', ');
    text = `${a.first ? '首次登录 First sign-in' : '异常登录 New sign-in'}: ${a.role} ${a.account} · ${a.ip} · ${what}`;
  } else if (a.kind === 'leak_blocked') {
    text = `拦截 Leak blocked: rule ${a.rule} · agent ${a.agent} · chat ${String(a.session).slice(0, 8)}`;
  } else {
    text = `${a.kind}`;
  }
  const at = new Date(a.at_ms || Date.now()).toLocaleTimeString();
  const list = $('alerts');
  list.prepend(el('li', { 'data-kind': a.kind }, el('time', { text: at }), text));
  while (list.children.length > MAX_ALERTS) list.lastElementChild.remove();
}

function render(report) {
  const updated = $('updated');
  updated.dataset.stale = 'false';
  updated.textContent = `更新于 ${new Date(report.at_ms).toLocaleTimeString()} · node ${report.node}`;
  $('figures').replaceChildren(...figures(report.sla || {}));
  $('queues').replaceChildren(...(report.queues || []).map(queueRow));
  $('agents').replaceChildren(...(report.agents || []).map(agentRow));
}

function figures(s) {
  const pct = (x) => (x === null || x === undefined ? '–' : `${Math.round(x * 1000) / 10}%`);
  const num = (x, unit = '') => (x === null || x === undefined ? '–' : `${Math.round(x * 10) / 10}${unit}`);
  const card = (label, value, hint, bad = false) =>
    el('div', { class: 'figure', 'data-bad': String(bad) },
      el('span', { class: 'label', text: label }),
      el('span', { class: 'value', text: value }),
      hint ? el('span', { class: 'hint', text: hint }) : null);
  const triggers = Object.entries(s.handoffs_by_trigger || {}).map(([k, v]) => `${k} ${v}`).join(' · ');
  return [
    card('在线会话 Sessions', num(s.sessions_active), `${num(s.greetings)} 次问候 greeted`),
    card(`问候达标 Greeted ≤ ${s.greeting_target_s}s`, pct(s.greeted_within_target),
      `平均 avg ${num(s.greeting_avg_ms, ' ms')}`, s.greeted_within_target !== null && s.greeted_within_target < 1),
    card('首次响应达标 First reply ≤ SLA', pct(s.first_replies_within_sla),
      `平均 avg ${num(s.first_reply_avg_s, ' s')} · SLA ${s.first_response_sla_s}s`,
      s.first_replies_within_sla !== null && s.first_replies_within_sla < 0.9),
    card('SLA 预警 warnings', num(s.sla_warnings), `自动问候 auto greetings ${num(s.agent_auto_greetings)}`, s.sla_warnings > 0),
    card('转人工率 Hand-off rate', pct(s.handoff_rate), triggers || `${num(s.handoffs)} hand-offs`),
    card('机器人回答 Bot replies', num(s.bot_answers), `平均排队 queue avg ${num(s.queue_wait_avg_s, ' s')}`),
  ];
}

function queueRow(q) {
  const wait = (s) => (s === null || s === undefined ? '–' : `${s} 秒`);
  return el('tr', {},
    el('th', { scope: 'row', text: q.group }),
    el('td', { class: 'num', text: String(q.length) }),
    el('td', { class: `num${q.oldest_wait_s >= LONG_WAIT_S ? ' waiting-long' : ''}`, text: wait(q.oldest_wait_s) }),
    el('td', { class: 'num', text: q.length ? wait(q.estimated_wait_s) : '–' }),
    el('td', { class: 'num', text: String(q.ready_capacity ?? '–') }));
}

function agentRow(a) {
  const share = a.capacity ? Math.min(1, a.load / a.capacity) : 1;
  const bar = el('span');
  bar.style.width = `${Math.round(share * 100)}%`; // CSSOM, not a style attribute: allowed by the CSP
  const meter = el('span', { class: 'meter', 'data-full': String(a.load >= a.capacity), 'aria-hidden': 'true' }, bar);
  return el('tr', { 'data-agent': a.id },
    el('th', { scope: 'row', text: `${a.name} (${a.id})` }),
    el('td', {}, el('span', { class: `status ${a.status}`, text: a.status })),
    el('td', { class: 'num' }, meter, `${a.load}/${a.capacity}`),
    el('td', { text: (a.groups || []).join(', ') }));
}
