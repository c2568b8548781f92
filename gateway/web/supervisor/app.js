// Supervisor view: polls GET /admin/supervisor (bearer admin token) every 1.5 s and draws the
// queues, the agents and the SLA figures. The token is kept in sessionStorage only.

import { el } from '/shared/dom.js';

const TOKEN_KEY = 'kefu.supervisor.token';
const POLL_MS = 1500;
const LONG_WAIT_S = 60;
const $ = (id) => document.getElementById(id);

let timer = null;
let lastOk = 0;

$('signin').addEventListener('submit', (e) => {
  e.preventDefault();
  const token = $('token').value.trim();
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  start();
});
$('signout').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY);
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
  $('board').hidden = true;
  $('signin').hidden = false;
  $('signin-error').textContent = error;
  $('token').focus();
}

async function poll() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return;
  try {
    const response = await fetch('/admin/supervisor', {
      headers: { Authorization: `Bearer ${token}` },
      cache: 'no-store',
    });
    if (response.status === 401 || response.status === 403) {
      sessionStorage.removeItem(TOKEN_KEY);
      return stop(`${response.status}: ${await response.text()}`);
    }
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    render(await response.json());
    lastOk = Date.now();
  } catch (err) {
    // Keep the last figures on screen, marked stale, and keep trying.
    const updated = $('updated');
    updated.dataset.stale = 'true';
    updated.textContent = `更新失败 · update failed (${err.message}); ${lastOk ? `last ${new Date(lastOk).toLocaleTimeString()}` : ''}`;
  }
  timer = setTimeout(poll, POLL_MS);
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
