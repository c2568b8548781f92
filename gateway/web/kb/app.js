// Knowledge-base page: the questions the bot missed (GET /admin/kb/misses), grouped by
// meaning, each with one click to add it as a paraphrase of an entry (PATCH add_questions) or
// to start a new entry (POST); the entries with their figures (GET /admin/kb/entries and
// /admin/kb/stats); a try box (POST /admin/kb/try, counted nowhere). The token (and a
// two-step sign-in pass) is kept in sessionStorage only. Texts are set with textContent only.

import { el } from '/shared/dom.js';

const TOKEN_KEY = 'kefu.kb.token';
const PASS_KEY = 'kefu.kb.otp_session';
const CATEGORIES = ['pre_sale', 'logistics', 'after_sale', 'invoice', 'payment', 'promotion',
  'live_stream', 'account', 'human', 'complaint'];
const $ = (id) => document.getElementById(id);
let entries = [];

function headers(extra = {}) {
  const h = { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY) || ''}`, ...extra };
  const pass = sessionStorage.getItem(PASS_KEY);
  if (pass) h['X-Kefu-OTP-Session'] = pass;
  return h;
}

/** One admin call; resolves to the JSON body, throws an Error with the server's message. */
async function api(method, path, body) {
  const init = { method, headers: headers(body ? { 'Content-Type': 'application/json' } : {}), cache: 'no-store' };
  if (body) init.body = JSON.stringify(body);
  const response = await fetch(path, init);
  const text = await response.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* plain-text refusals */ }
  if (response.status === 401 || response.status === 403) {
    signedOut(json?.error || text);
    throw new Error(text);
  }
  if (!response.ok) {
    const field = json?.field ? ` (${json.field})` : '';
    throw new Error(`${json?.error || text}${field}`);
  }
  return json;
}

function notice(text, error = false) {
  $('notice').textContent = text;
  $('notice').className = error ? 'notice error' : 'notice';
}

$('signin').addEventListener('submit', async (e) => {
  e.preventDefault();
  const token = $('token').value.trim();
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  const code = $('otp-code').value.trim();
  $('otp-code').value = '';
  if (!$('otp-field').hidden && code) {
    const response = await fetch('/admin/otp-session', {
      method: 'POST', headers: { Authorization: `Bearer ${token}`, 'X-Kefu-OTP': code }, cache: 'no-store',
    });
    if (!response.ok) return signedOut(await response.text());
    const { otp_session: pass } = await response.json();
    if (pass) sessionStorage.setItem(PASS_KEY, pass);
  }
  start();
});
$('signout').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(PASS_KEY);
  signedOut('');
});
$('refresh').addEventListener('click', () => load());
$('try').addEventListener('submit', (e) => {
  e.preventDefault();
  tryQuestion($('try-text').value, $('try-lang').value);
});

if (sessionStorage.getItem(TOKEN_KEY)) start();
else signedOut('');

function signedOut(error) {
  $('board').hidden = true;
  $('signin').hidden = false;
  const otp = /otp_required|bad_otp/.test(error || '');
  $('otp-field').hidden = !otp;
  $('signin-error').textContent = error || '';
}

function start() {
  $('signin').hidden = true;
  $('board').hidden = false;
  load();
}

async function load() {
  try {
    const [list, misses, stats] = await Promise.all([
      api('GET', '/admin/kb/entries'), api('GET', '/admin/kb/misses'), api('GET', '/admin/kb/stats'),
    ]);
    entries = list.entries;
    $('version').textContent = `版本 version ${list.version} · ${entries.length} 条 entries`;
    drawMisses(misses.clusters);
    drawEntries(stats.entries);
  } catch (err) {
    notice(String(err.message || err), true);
  }
}

function entryOptions(lang, selected) {
  return entries.filter((e) => e.lang === lang).map((e) =>
    el('option', { value: e.id, selected: e.id === selected }, `${e.id} · ${e.questions[0]}`));
}

function drawMisses(clusters) {
  const list = $('misses');
  list.replaceChildren();
  if (!clusters.length) list.append(el('li', { class: 'miss' }, '没有 · none'));
  for (const c of clusters) {
    const example = c.examples[0] || '';
    const select = el('select', { 'aria-label': '条目 Entry', class: 'paraphrase-of' },
      entryOptions(c.lang, c.nearest?.entry_id));
    const nearest = c.nearest ? `最接近 nearest: ${c.nearest.entry_id} (${c.nearest.score.toFixed(2)})` : '';
    const item = el('li', { class: 'miss', 'data-cluster': c.cluster },
      el('div', {}, el('span', { class: 'count' }, `${c.count} 次 times · ${c.wordings} 种说法 wordings`),
        el('span', { class: 'updated' }, `${c.lang} · ${nearest}`)),
      el('ul', {}, c.examples.map((t) => el('li', { class: 'example' }, t))),
      el('div', { class: 'actions' },
        select,
        el('button', { type: 'button', class: 'btn btn-primary add-paraphrase',
          onclick: () => addParaphrases(select.value, c.examples) }, '加为该条目的说法 · Add as paraphrase'),
        el('button', { type: 'button', class: 'btn new-entry-btn',
          onclick: () => item.append(newEntryForm(c, example)) }, '新建条目 · New entry')));
    list.append(item);
  }
}

async function addParaphrases(id, examples) {
  try {
    const done = await api('PATCH', `/admin/kb/entries/${encodeURIComponent(id)}`, { add_questions: examples });
    notice(`已加入 ${id}，版本 version ${done.version}`);
    await load();
  } catch (err) {
    notice(String(err.message || err), true);
  }
}

function newEntryForm(cluster, example) {
  const id = el('input', { type: 'text', 'aria-label': 'id', placeholder: 'id, e.g. cancel-order-2-zh' });
  const category = el('select', { 'aria-label': 'category' }, CATEGORIES.map((c) => el('option', { value: c }, c)));
  const answer = el('textarea', { 'aria-label': '回答 answer', placeholder: '回答 · answer' });
  const form = el('form', { class: 'new-entry' }, id, category, answer,
    el('button', { class: 'btn btn-primary', type: 'submit' }, '保存 · Save'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const body = { id: id.value.trim(), category: category.value, lang: cluster.lang,
        questions: cluster.examples.length ? cluster.examples : [example], answer: answer.value, keywords: [] };
      const done = await api('POST', '/admin/kb/entries', body);
      notice(`已新建 ${body.id}，版本 version ${done.version}`);
      await load();
    } catch (err) {
      notice(String(err.message || err), true);
    }
  });
  return form;
}

function drawEntries(figures) {
  const byId = new Map(figures.map((f) => [f.entry_id, f]));
  const rows = entries.map((e) => {
    const f = byId.get(e.id) || {};
    const rate = f.helpful_rate === null || f.helpful_rate === undefined ? '—' : `${Math.round(f.helpful_rate * 100)}%`;
    const low = f.helpful_rate !== null && f.helpful_rate !== undefined && f.helpful_rate < 0.5;
    return el('tr', { 'data-entry': e.id },
      el('td', {}, e.id), el('td', {}, e.questions[0]),
      el('td', {}, String(f.answered || 0)), el('td', {}, String(f.suggested || 0)),
      el('td', {}, String(f.picked || 0)),
      el('td', { class: low ? 'low' : undefined }, `${rate} (${f.helpful_yes || 0}/${f.helpful_no || 0})`),
      el('td', {}, String(f.handoffs_after || 0)));
  });
  $('entries').replaceChildren(...rows);
}

async function tryQuestion(text, lang) {
  const out = $('try-result');
  try {
    const r = await api('POST', '/admin/kb/try', { text, lang });
    const top = r.matches[0];
    out.replaceChildren(
      el('p', {}, el('span', { class: 'decision', 'data-decision': r.decision }, r.decision),
        ` · confidence ${r.confidence.toFixed(2)} · version ${r.version}`),
      el('ol', {}, r.matches.map((m) => el('li', { 'data-entry': m.entry_id },
        `${m.entry_id} (${m.score.toFixed(2)}): ${m.question}`))),
      top && r.decision === 'answer' ? el('p', { class: 'answer' }, top.answer || '') : null);
  } catch (err) {
    out.replaceChildren(el('p', { class: 'error-text' }, String(err.message || err)));
  }
}
