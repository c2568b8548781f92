// The customer widget: a chat bubble that opens a panel talking to `/ws/customer`.
//
// Everything on screen is drawn from journal entries (server frames, plus what the customer
// did), so a reload redraws the same conversation from sessionStorage and the socket resumes
// with `session`, `last_seq` and the greeting's `resume_token` (without it the server will not
// hand the session over): nothing is lost and nothing is shown twice.

import { Journal, newId } from '/shared/journal.js';
import { ResumableSocket, wsBase } from '/shared/socket.js';
import { strings } from './i18n.js';
import { attachmentNode, cardNode } from '/shared/rich.js';
import { Attacher } from './attach.js';
import { buildShell, el, leaveCard, line, setNote, surveyCard } from './view.js';

const TYPING_EVERY_MS = 2000;
const TYPING_SHOWN_MS = 4000;

/** Mounts the widget. `opts`: gateway (http base URL), channel, lang, open, identity (the
 * shop's signed token for a logged-in customer). */
export function mount(opts = {}) {
  const widget = new Widget(opts);
  window.kefuWidget = widget; // for the shop's page: kefuWidget.open(), .close()
  // `kefu.showProduct({sku, title, price, image_url, url})`: the product the page shows.
  const queued = window.kefu?.queued || [];
  window.kefu = { showProduct: (p) => widget.attacher.showProduct(p) };
  if (opts.product) widget.attacher.showProduct(opts.product);
  for (const p of queued) widget.attacher.showProduct(p);
  return widget;
}

class Widget {
  constructor({ gateway = location.origin, channel = 'web', lang = 'zh', open = false, identity = '' } = {}) {
    this.gateway = gateway;
    this.identity = identity;
    this.channel = channel;
    this.lang = lang === 'en' ? 'en' : 'zh';
    this.t = strings(this.lang);
    this.journal = new Journal('kefu.widget');
    this.visitor = visitorId();
    this.ui = buildShell(this.t, this.lang);
    this.unread = 0;
    this.lastTypingSent = 0;
    this.typingTimer = null;
    this.wire();
    this.attacher = new Attacher(this);
    document.body.append(this.ui.root);
    this.redraw();
    this.socket = new ResumableSocket({
      url: () => this.url(),
      journal: this.journal,
      onFrame: (frame) => this.receive(frame),
      onStatus: (status, info) => this.connection(status, info),
    });
    if (!this.journal.extra.ended) this.socket.start();
    if (open || this.journal.extra.open) this.open();
  }

  url() {
    const q = new URLSearchParams({ channel: this.channel, lang: this.lang, visitor: this.visitor });
    // The shop vouches for its logged-in customer; the gateway then links their chats.
    if (this.identity) q.set('identity', this.identity);
    if (this.journal.session) {
      q.set('session', this.journal.session);
      q.set('last_seq', String(this.journal.lastSeq));
      q.set('resume_token', this.journal.extra.resumeToken || '');
    }
    return `${wsBase(this.gateway)}/ws/customer?${q}`;
  }

  wire() {
    const { ui } = this;
    ui.bubble.addEventListener('click', () => (ui.panel.hidden ? this.open() : this.close()));
    ui.closeBtn.addEventListener('click', () => this.close());
    ui.panel.addEventListener('keydown', (e) => e.key === 'Escape' && this.close());
    ui.form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.sendText(ui.input.value);
    });
    ui.input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        this.sendText(ui.input.value);
      }
    });
    ui.input.addEventListener('input', () => this.typing());
    ui.humanBtn.addEventListener('click', () => {
      this.socket.send({ type: 'request_human' });
      ui.humanBtn.disabled = true;
    });
    ui.endBtn.addEventListener('click', () => this.socket.send({ type: 'close' }));
    ui.newBtn.addEventListener('click', () => this.restart());
  }

  open() {
    this.ui.panel.hidden = false;
    this.ui.bubble.setAttribute('aria-expanded', 'true');
    this.ui.root.classList.add('kefu-is-open');
    this.journal.extra.open = true;
    this.journal.save();
    this.unread = 0;
    this.showUnread();
    this.scroll();
    this.ui.input.focus();
  }

  close() {
    this.ui.panel.hidden = true;
    this.ui.bubble.setAttribute('aria-expanded', 'false');
    this.ui.root.classList.remove('kefu-is-open');
    this.journal.extra.open = false;
    this.journal.save();
    this.ui.bubble.focus();
  }

  // ---- what the customer does -------------------------------------------------------------

  sendText(raw) {
    const text = raw.trim();
    if (this.attacher.file && !this.journal.extra.ended) {
      this.ui.input.value = '';
      return this.attacher.send(text);
    }
    if (!text || this.journal.extra.ended) return;
    const id = newId('c');
    this.ui.input.value = '';
    this.record({ k: 'out', id, text, state: 'sending' });
    this.socket.sendReliable({ type: 'message', id, text });
  }

  typing() {
    const now = Date.now();
    if (!this.journal.extra.agent || now - this.lastTypingSent < TYPING_EVERY_MS) return;
    this.lastTypingSent = now;
    this.socket.sendVolatile({ type: 'typing' });
  }

  feedback(entryId, helpful) {
    this.socket.send({ type: 'feedback', entry_id: entryId, helpful });
    this.record({ k: 'feedback', entry_id: entryId, helpful });
  }

  pick(item) {
    this.record({ k: 'pick', text: item.question });
    this.socket.send({ type: 'pick', entry_id: item.entry_id });
  }

  leaveMessage(text, contact) {
    const id = newId('l');
    const frame = { type: 'leave_message', id, text };
    if (contact) frame.contact = contact;
    this.record({ k: 'left', id, text, state: 'sending' });
    this.socket.send(frame);
  }

  answerSurvey(score, comment) {
    const frame = { type: 'survey_answer', score };
    if (comment) frame.comment = comment;
    this.socket.send(frame);
    this.record({ k: 'survey', score, comment });
  }

  /** After the end: forget this conversation and start another. */
  restart() {
    this.socket.stop();
    this.journal.reset({ keepExtra: false });
    this.journal.extra.open = true;
    this.redraw();
    this.socket.start();
    this.ui.input.focus();
  }

  // ---- what the server says ---------------------------------------------------------------

  receive(frame) {
    switch (frame.type) {
      case 'greeting':
        this.journal.extra.resumeToken = frame.resume_token;
        this.journal.session = frame.session_id; // saves the journal, token included
        break;
      case 'ack':
        return this.settle(frame.id, 'sent');
      case 'typing':
        return this.showTyping();
      case 'error':
        if (frame.code === 'session_expired' || frame.code === 'session_unknown') return this.expired();
        if (frame.id) this.settle(frame.id, 'failed');
        break;
      default:
    }
    this.record({ k: 'in', f: frame });
    if (['bot_answer', 'suggestions', 'message', 'agent_joined', 'survey'].includes(frame.type)) {
      this.noteUnread();
    }
    if (frame.type === 'closed' && !['agent_closed', 'shutting_down'].includes(frame.reason)) {
      this.socket.stop(); // the session is over on the server: no reconnect
    }
  }

  /** The resumed session had ended: start over, keeping unsent messages for the new one. */
  expired() {
    const unsent = this.journal.pending.map((f) => ({ k: 'out', id: f.id, text: f.text, state: 'sending' }));
    this.journal.reset({ keepPending: true, keepExtra: false });
    this.journal.extra.open = !this.ui.panel.hidden;
    this.redraw();
    this.record({ k: 'notice', text: this.t.expired });
    for (const entry of unsent) this.record(entry);
  }

  settle(id, state) {
    const entry = this.journal.entries.find((e) => (e.k === 'out' || e.k === 'left') && e.id === id);
    if (!entry || entry.state === 'sent') return;
    entry.state = state;
    this.journal.save();
    if (entry.k === 'left' && state === 'sent') this.ui.log.querySelector('.kefu-leave-done')?.removeAttribute('hidden');
    const item = this.ui.log.querySelector(`[data-id="${CSS.escape(id)}"]`);
    if (item) setNote(item, this.t[state], state);
  }

  connection(status, info) {
    const { conn } = this.ui;
    conn.dataset.state = status;
    if (status === 'open') conn.textContent = '';
    else if (status === 'connecting' && !info.attempt) conn.textContent = this.t.connecting;
    else if (!this.journal.extra.ended) conn.textContent = this.t.offline;
  }

  // ---- drawing ----------------------------------------------------------------------------

  record(entry) {
    this.journal.append(entry);
    this.draw(entry);
    this.scroll();
    // A photo takes its height when it loads: keep the newest line in view.
    for (const img of this.ui.log.lastElementChild?.querySelectorAll('img') || []) {
      img.addEventListener('load', () => this.scroll(), { once: true });
    }
  }

  redraw() {
    this.ui.log.replaceChildren();
    this.ui.status.hidden = true;
    this.ui.sub.textContent = this.t.botName;
    this.ui.humanBtn.hidden = false;
    this.ui.humanBtn.disabled = false;
    this.ui.newBtn.hidden = true;
    this.ui.endBtn.hidden = false;
    this.ui.form.hidden = false;
    for (const entry of this.journal.entries) this.draw(entry);
  }

  /** Draws one entry; the same code runs live and when redrawing after a reload. */
  draw(entry) {
    const { t, ui } = this;
    const add = (node) => ui.log.append(node);
    switch (entry.k) {
      case 'out':
        return add(line('customer', entry.text, { id: entry.id, note: t[entry.state], extra: this.attacher.extra(entry) }));
      case 'pick':
        return add(line('customer', entry.text));
      case 'left': {
        ui.log.querySelector('.kefu-leave-item')?.remove();
        add(line('customer', entry.text, { id: entry.id, note: t[entry.state] }));
        const done = line('system', t.leaveDone);
        done.classList.add('kefu-leave-done');
        if (entry.state !== 'sent') done.hidden = true;
        return add(done);
      }
      case 'notice':
        return add(line('system', entry.text));
      case 'feedback': {
        const rows = ui.log.querySelectorAll(`.kefu-helpful[data-entry="${CSS.escape(entry.entry_id)}"]`);
        rows.forEach((row) => row.replaceWith(el('p', { class: 'kefu-thanks', text: t.thanksFeedback })));
        return;
      }
      case 'survey': {
        const label = t.survey[entry.score - 1] || String(entry.score);
        const card = ui.log.querySelector('.kefu-survey-item');
        const thanks = line('system', t.surveyThanks(label));
        thanks.classList.add('kefu-survey-done');
        if (card) card.replaceWith(thanks);
        else add(thanks);
        return;
      }
      case 'in':
        return this.drawFrame(entry.f, add);
      default:
    }
  }

  drawFrame(f, add) {
    const { t, ui } = this;
    switch (f.type) {
      case 'greeting':
        return add(line('bot', f.text, { name: t.botName }));
      case 'bot_answer': {
        const item = line('bot', f.text, { name: t.botName });
        item.append(
          el(
            'div',
            { class: 'kefu-helpful', 'data-entry': f.entry_id, role: 'group', 'aria-label': t.helpful },
            el('span', { text: t.helpful }),
            el('button', { type: 'button', text: t.yes, onclick: () => this.feedback(f.entry_id, true) }),
            el('button', { type: 'button', text: t.no, onclick: () => this.feedback(f.entry_id, false) }),
          ),
        );
        // Follow-up questions of the entry: a button sends the question.
        if (f.quick_replies?.length) {
          const chips = f.quick_replies.map((q) =>
            el('button', { type: 'button', class: 'kefu-chip kefu-quick', text: q, onclick: () => this.sendText(q) }),
          );
          item.append(el('div', { class: 'kefu-chips' }, chips));
        }
        return add(item);
      }
      case 'suggestions': {
        // `text`: the bot asks to rephrase (reason `clarify`) and offers the main topics.
        const item = line('bot', f.text || t.suggestions, { name: t.botName });
        const chips = (f.items || []).map((s) =>
          el('button', { type: 'button', class: 'kefu-chip', text: s.question, onclick: () => this.pick(s) }),
        );
        item.append(el('div', { class: 'kefu-chips' }, chips));
        return add(item);
      }
      case 'handoff': {
        // Also after a poor survey answer: the chat reopens as a complaint.
        ui.humanBtn.hidden = true;
        ui.newBtn.hidden = true;
        ui.endBtn.hidden = false;
        ui.form.hidden = false;
        const text = { transfer: t.transfer, survey: t.surveyHandoff }[f.reason];
        return add(line('system', text || (f.level ? t.handoffComplaint : t.handoff)));
      }
      case 'queued':
        ui.humanBtn.hidden = true;
        ui.status.hidden = false;
        ui.status.textContent = f.no_agent_available ? t.noAgent(f.position) : t.queued(f.position, f.estimated_wait_s);
        return;
      case 'agent_joined':
        ui.status.hidden = true;
        ui.humanBtn.hidden = true;
        ui.sub.textContent = t.withAgent(f.name);
        this.journal.extra.agent = f.name;
        return add(line('system', t.joined(f.name)));
      case 'agent_left':
        ui.sub.textContent = t.botName;
        this.journal.extra.agent = null;
        return add(line('system', t.agentLeft));
      case 'message': {
        this.hideTyping();
        const note = f.auto ? t.auto : f.offline ? t.offlineReply : undefined;
        return add(
          line('agent', f.text, {
            name: f.name,
            note,
            extra: [attachmentNode(this.gateway, f.attachment, 'kefu-att'), cardNode(f.card, 'kefu-card')],
          }),
        );
      }
      case 'earlier': {
        // A returning customer: their last chats, above the new one.
        ui.log.querySelector('.kefu-earlier')?.remove();
        const block = el('li', { class: 'kefu-earlier' }, el('p', { class: 'kefu-earlier-title', text: t.earlier }));
        for (const conv of [...(f.conversations || [])].reverse()) {
          const when = new Date(conv.started_ms).toLocaleString(this.lang === 'en' ? 'en' : 'zh-CN');
          const lines = (conv.lines || []).map((l) => line(l.from, l.text, { name: l.from === 'bot' ? t.botName : undefined }));
          block.append(el('p', { class: 'kefu-earlier-when', text: when }), el('ol', { class: 'kefu-earlier-log' }, lines));
        }
        block.append(el('p', { class: 'kefu-earlier-title', text: t.earlierEnd }));
        ui.log.prepend(block);
        return;
      }
      case 'offline': {
        // Nobody of the group is there: the bot stays, and a message may be left.
        ui.status.hidden = false;
        const at = f.next_open_ms
          ? new Date(f.next_open_ms).toLocaleString(this.lang === 'en' ? 'en' : 'zh-CN', { weekday: 'short', hour: '2-digit', minute: '2-digit' })
          : '';
        ui.status.textContent = f.reason === 'outside_hours' ? t.offlineHours(at) : t.offlineNoAgent;
        ui.humanBtn.hidden = false;
        ui.humanBtn.disabled = false;
        if (this.journal.entries.some((e) => e.k === 'left')) return;
        return add(leaveCard(t, (text, contact) => this.leaveMessage(text, contact)));
      }
      case 'survey':
        return add(surveyCard(t, (score, comment) => this.answerSurvey(score, comment)));
      case 'closed':
        return this.drawClosed(f, add);
      case 'error':
        if (f.code === 'not_in_state') return; // a race (e.g. a double click); nothing to tell
        return add(line('system', t.errors[f.code] || t.errors.other));
      default:
    }
  }

  drawClosed(f, add) {
    const { t, ui } = this;
    add(line('system', t.closed[f.reason] || t.closed.other));
    if (f.reason === 'shutting_down') return;
    ui.status.hidden = true;
    ui.humanBtn.hidden = true;
    ui.newBtn.hidden = false;
    ui.endBtn.hidden = true;
    ui.form.hidden = true; // after agent_closed the survey comes; then a new chat may start
    ui.sub.textContent = t.botName;
    this.journal.extra.agent = null;
    if (f.reason !== 'agent_closed') this.journal.extra.ended = true;
  }

  showTyping() {
    this.ui.typing.hidden = false;
    clearTimeout(this.typingTimer);
    this.typingTimer = setTimeout(() => this.hideTyping(), TYPING_SHOWN_MS);
  }

  hideTyping() {
    clearTimeout(this.typingTimer);
    this.ui.typing.hidden = true;
  }

  noteUnread() {
    if (!this.ui.panel.hidden && document.visibilityState === 'visible') return;
    this.unread += 1;
    this.showUnread();
  }

  showUnread() {
    const { badge } = this.ui;
    badge.hidden = this.unread === 0;
    badge.textContent = String(this.unread);
    badge.setAttribute('aria-label', `${this.unread} new`);
  }

  scroll() {
    const { log } = this.ui;
    log.scrollTop = log.scrollHeight;
  }
}

/** A stable anonymous visitor id for this browser (lets the shop recognise a returning visitor). */
function visitorId() {
  try {
    let id = localStorage.getItem('kefu.visitor');
    if (!id) {
      id = newId('v');
      localStorage.setItem('kefu.visitor', id);
    }
    return id;
  } catch {
    return newId('v');
  }
}
