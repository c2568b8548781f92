// The widget's DOM: the bubble, the panel and the pieces of the conversation. No state lives
// here; app.js decides what to draw. Every class is prefixed `kefu-` so a shop's own styles
// and ours do not collide.

import { el } from '/shared/dom.js';

export { el };

/** Builds the bubble and the (hidden) panel; returns the elements app.js talks to. */
export function buildShell(t, lang) {
  const ui = {};
  ui.badge = el('span', { class: 'kefu-badge', hidden: true, 'aria-label': '' });
  ui.bubble = el(
    'button',
    { class: 'kefu-bubble', type: 'button', 'aria-expanded': 'false', 'aria-controls': 'kefu-panel' },
    chatIcon(),
    el('span', { class: 'kefu-bubble-label', text: t.open }),
    ui.badge,
  );
  ui.sub = el('span', { class: 'kefu-sub', text: t.botName });
  ui.conn = el('span', { class: 'kefu-conn', role: 'status' });
  ui.endBtn = el('button', { class: 'kefu-link', type: 'button', text: t.endChat });
  ui.closeBtn = el('button', { class: 'kefu-icon', type: 'button', 'aria-label': t.minimize, text: '×' });
  ui.status = el('div', { class: 'kefu-status', role: 'status', 'aria-live': 'polite', hidden: true });
  ui.log = el('ol', { class: 'kefu-log', 'aria-live': 'polite', 'aria-relevant': 'additions', 'aria-label': t.title });
  ui.typing = el('div', { class: 'kefu-typing', hidden: true, text: t.typing });
  ui.humanBtn = el('button', { class: 'kefu-human', type: 'button', text: t.human });
  ui.newBtn = el('button', { class: 'kefu-new', type: 'button', hidden: true, text: t.newChat });
  ui.input = el('textarea', {
    id: 'kefu-input', class: 'kefu-input', rows: '2', maxlength: '2000', placeholder: t.placeholder,
  });
  ui.sendBtn = el('button', { class: 'kefu-send', type: 'submit', text: t.send });
  // Photos and files: the button opens the picker; paste and drop work too (attach.js).
  ui.fileInput = el('input', { type: 'file', class: 'kefu-sr', id: 'kefu-file', tabindex: '-1', 'aria-hidden': 'true' });
  ui.attachBtn = el('button', { class: 'kefu-attach', type: 'button', title: t.attach, 'aria-label': t.attach, text: '📎' });
  ui.preview = el('div', { class: 'kefu-preview', hidden: true, role: 'status' });
  ui.product = el('div', { class: 'kefu-product', hidden: true });
  ui.form = el(
    'form',
    { class: 'kefu-compose' },
    el('label', { class: 'kefu-sr', for: 'kefu-input', text: t.inputLabel }),
    ui.attachBtn,
    ui.fileInput,
    ui.input,
    ui.sendBtn,
  );
  ui.panel = el(
    'section',
    { id: 'kefu-panel', class: 'kefu-panel', role: 'dialog', 'aria-label': t.title, hidden: true },
    el(
      'header',
      { class: 'kefu-head' },
      el('div', { class: 'kefu-head-text' }, el('strong', { class: 'kefu-title', text: t.title }), ui.sub),
      ui.conn,
      ui.endBtn,
      ui.closeBtn,
    ),
    ui.status,
    ui.log,
    ui.typing,
    el('div', { class: 'kefu-actions' }, ui.humanBtn, ui.newBtn),
    ui.product,
    ui.preview,
    ui.form,
  );
  ui.root = el('div', { class: 'kefu-root', lang: lang === 'en' ? 'en' : 'zh-CN' }, ui.panel, ui.bubble);
  return ui;
}

/** One line of the conversation: `who` is customer, bot, agent or system. */
export function line(who, text, { name, note, id, extra = [] } = {}) {
  const item = el('li', { class: `kefu-line kefu-${who}`, 'data-id': id });
  if (name) item.append(el('span', { class: 'kefu-name', text: name }));
  if (text || !extra.length) item.append(el('div', { class: 'kefu-text', text }));
  for (const node of extra) if (node) item.append(node);
  if (note !== undefined) item.append(el('span', { class: 'kefu-note', text: note }));
  return item;
}

/** A customer message's delivery note (sending, delivered, not sent). */
export function setNote(item, text, state) {
  const note = item.querySelector('.kefu-note');
  if (note) {
    note.textContent = text;
    note.dataset.state = state;
  }
}

/** The 1-5 survey as a radio group with an optional comment. */
export function surveyCard(t, onSubmit) {
  const options = t.survey.map((label, i) =>
    el(
      'label',
      { class: 'kefu-option' },
      el('input', { type: 'radio', name: 'kefu-score', value: String(i + 1), required: true }),
      el('span', { text: label }),
    ),
  );
  const comment = el('textarea', { id: 'kefu-survey-comment', rows: '2', maxlength: '500' });
  const form = el(
    'form',
    { class: 'kefu-survey' },
    el('fieldset', {}, el('legend', { text: t.surveyTitle }), ...options),
    el('label', { for: 'kefu-survey-comment', text: t.surveyComment }),
    comment,
    el('button', { type: 'submit', class: 'kefu-send', text: t.surveySubmit }),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const picked = form.querySelector('input[name="kefu-score"]:checked');
    if (!picked) return;
    onSubmit(Number(picked.value), comment.value.trim());
  });
  return el('li', { class: 'kefu-line kefu-system kefu-survey-item' }, form);
}

/** The leave-a-message form shown when nobody is there (`offline`). */
export function leaveCard(t, onSubmit) {
  const text = el('textarea', { id: 'kefu-leave-text', rows: '3', maxlength: '2000', required: true });
  const contact = el('input', { id: 'kefu-leave-contact', type: 'text', maxlength: '100', autocomplete: 'tel' });
  const form = el(
    'form',
    { class: 'kefu-survey kefu-leave' },
    el('strong', { text: t.leaveTitle }),
    el('label', { for: 'kefu-leave-text', text: t.leaveText }),
    text,
    el('label', { for: 'kefu-leave-contact', text: t.leaveContact }),
    contact,
    el('button', { type: 'submit', class: 'kefu-send', text: t.leaveSend }),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const body = text.value.trim();
    if (!body) return;
    onSubmit(body, contact.value.trim());
  });
  return el('li', { class: 'kefu-line kefu-system kefu-leave-item' }, form);
}

/** The bubble's speech-balloon icon (inline SVG: no emoji font needed). */
function chatIcon() {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('class', 'kefu-bubble-icon');
  svg.setAttribute('aria-hidden', 'true');
  const path = document.createElementNS(ns, 'path');
  path.setAttribute('d', 'M4 4h16a2 2 0 0 1 2 2v9a2 2 0 0 1-2 2h-8l-5 4v-4H4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z');
  path.setAttribute('fill', 'currentColor');
  svg.append(path);
  return svg;
}
