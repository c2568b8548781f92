// One chat in the agent console: a card with the history, the reply box, canned replies,
// transfer and close, plus its tab (with the unread count) in the strip above the cards.

import { el } from '/shared/dom.js';
import { ACCEPT, attachmentNode, cardNode } from '/shared/rich.js';

const WHO = { customer: '客户', bot: '机器人', agent: '我', system: '系统' };

export class ChatCard {
  /**
   * @param {object} assigned the `assigned` frame
   * @param {object} o canned (strings), groups (strings), and the callbacks onSend(text),
   *   onTyping(), onTransfer(group), onClose(), onDismiss(), onHistory(page), onOrders()
   */
  constructor(assigned, o) {
    this.session = assigned.session;
    this.unread = 0;
    this.ended = false;
    const short = this.session.slice(0, 8);
    const c = assigned.customer || {};
    const headId = `chat-${this.session}`;
    this.badge = el('span', { class: 'badge', hidden: true });
    this.tab = el('button', { class: 'tab', type: 'button', 'data-session': this.session }, `客户 ${short}`, this.badge);
    this.tab.addEventListener('click', () => this.focus());
    this.sla = el('div', { class: 'sla', role: 'alert', hidden: true });
    this.state = el('div', { class: 'state', role: 'status', hidden: true });
    this.log = el('ol', { class: 'log', 'aria-live': 'polite', 'aria-label': `与客户 ${short} 的对话` });
    this.typingLine = el('div', { class: 'typing', hidden: true, text: '客户正在输入… (typing)' });
    this.input = el('textarea', { id: `reply-${this.session}`, rows: '2', maxlength: '2000', placeholder: '回复客户，Enter 发送 · Reply, Enter to send' });
    // Send a photo: picked here, uploaded by the app (onAttach), then sent as a message.
    this.file = el('input', { type: 'file', accept: ACCEPT, class: 'sr-only', id: `file-${this.session}` });
    this.file.addEventListener('change', () => {
      const f = this.file.files?.[0];
      this.file.value = '';
      if (f && !this.ended) o.onAttach?.(f);
    });
    this.form = el(
      'form',
      { class: 'compose' },
      el('label', { class: 'sr-only', for: `reply-${this.session}`, text: '回复 Reply' }),
      el('button', { class: 'btn attach', type: 'button', title: '发送图片 Send a photo', 'aria-label': '发送图片 Send a photo', text: '📎', onclick: () => this.file.click() }),
      this.file,
      this.input,
      el('button', { class: 'btn btn-primary', type: 'submit', text: '发送 Send' }),
    );
    this.canned = el(
      'div',
      { class: 'canned', role: 'group', 'aria-label': '常用话术 Canned replies' },
      (o.canned || []).map((text) =>
        el('button', { type: 'button', title: text, text, onclick: () => this.insert(text) }),
      ),
    );
    const select = el(
      'select',
      { id: `group-${this.session}` },
      (o.groups || []).map((g) => el('option', { value: g, text: g })),
    );
    this.transferBtn = el('button', { class: 'btn', type: 'button', text: '转接 Transfer', onclick: () => o.onTransfer(select.value) });
    this.closeBtn = el('button', { class: 'btn', type: 'button', text: '结束会话 Close', onclick: () => o.onClose() });
    this.dismissBtn = el('button', { class: 'btn', type: 'button', hidden: true, text: '移除 Dismiss', onclick: () => o.onDismiss() });
    this.transferBox = el(
      'span',
      { class: 'transfer' },
      el('label', { for: `group-${this.session}`, text: '转接到 to ' }),
      select,
      ' ',
      this.transferBtn,
    );
    this.tools = el(
      'div',
      { class: 'tools' },
      this.transferBox,
      this.closeBtn,
      this.dismissBtn,
    );
    this.el = el(
      'article',
      { class: 'chat', 'aria-labelledby': headId, 'data-session': this.session },
      el(
        'header',
        { class: 'chat-head' },
        el('h2', { id: headId }, `客户 ${short}`, this.badge.cloneNode()),
        el('span', { class: 'group', text: assigned.group }),
        c.complaint_level ? el('span', { class: 'complaint', text: `投诉 ${c.complaint_level} 级` }) : null,
        c.returning ? el('span', { class: 'returning', text: '老客户 returning' }) : null,
        c.tier ? el('span', { class: 'tier', text: c.tier }) : null,
        el('span', {
          class: 'chat-meta',
          text: `${c.channel || ''} · ${c.lang || ''}${c.visitor ? ` · ${c.visitor}` : ''}${c.name ? ` · ${c.name}` : ''}${c.phone ? ` · ${c.phone}` : ''} · 排队 ${Math.round((assigned.waited_ms || 0) / 1000)} 秒`,
        }),
      ),
      this.sla,
      this.state,
      this.earlier = earlierPanel(c, () => o.onHistory?.(0)),
      this.orders = ordersPanel(c, () => o.onOrders?.()),
      this.log,
      this.typingLine,
      this.canned,
      this.form,
      this.tools,
    );
    this.headBadge = this.el.querySelector('h2 .badge');
    // One side panel open at a time: the chat itself keeps its room.
    const panels = [this.earlier, this.orders].filter(Boolean);
    for (const panel of panels) {
      panel.addEventListener('toggle', () => {
        if (panel.open) for (const other of panels) if (other !== panel) other.open = false;
      });
    }
    this.form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.submit(o.onSend);
    });
    this.input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        this.submit(o.onSend);
      }
    });
    this.input.addEventListener('input', () => o.onTyping());
    this.el.addEventListener('focusin', () => this.seen());
    this.el.addEventListener('click', () => this.seen());
    this.gateway = location.origin;
    for (const h of assigned.history || []) this.line(h.from, h.text, { history: true, rich: h });
    this.line('system', '已接入，以上为历史记录 · assigned; history above');
  }

  /** The `history` answer: the earlier transcripts (masked by the server) in the side panel. */
  showHistory(f, onMore) {
    const panel = this.earlier;
    if (!panel) return;
    panel.hidden = false;
    panel.open = true;
    const list = panel.querySelector('.earlier-full');
    if (f.page === 0) list.replaceChildren();
    for (const conv of f.conversations || []) {
      const when = new Date(conv.started_ms).toLocaleString('zh-CN');
      const head = `${when} · ${conv.channel} · ${(conv.agents || []).join('、') || '机器人'}${conv.survey_score ? ` · 评分 ${conv.survey_score}` : ''}`;
      const lines = (conv.transcript || []).map((l) =>
        el('li', { class: `msg ${l.from}` }, el('span', { class: 'who', text: WHO[l.from] || l.from }), el('span', { class: 'body', text: l.text })),
      );
      list.append(el('li', { class: 'earlier-conv', 'data-session': conv.session }, el('strong', { text: head }), el('ol', { class: 'log earlier-log' }, lines)));
    }
    panel.querySelector('.earlier-more')?.remove();
    if (f.more) {
      panel.append(el('button', { class: 'btn earlier-more', type: 'button', text: '更早 · older', onclick: () => onMore(f.page + 1) }));
    }
  }

  /** The `orders` answer: the customer's recent orders from the shop (masked by the server),
   * each with a button that sends it to the customer as an order card. */
  showOrders(f, onSendCard) {
    const panel = this.orders;
    if (!panel) return;
    const list = panel.querySelector('.orders-list');
    const note = panel.querySelector('.orders-note');
    list.replaceChildren();
    const why = {
      timeout: '商城订单接口超时 · the shop did not answer in time',
      unavailable: '订单暂不可用 · orders unavailable',
      not_configured: '未接入商城订单 · no order endpoint configured',
      not_identified: '匿名访客，无订单 · an anonymous visitor',
    };
    note.textContent = f.available ? (f.orders?.length ? '' : '暂无订单 · no recent orders') : why[f.reason] || f.reason || '';
    // The latest order in the one-line summary: seen at a glance, the chat keeps its room.
    const latest = f.orders?.[0]?.card;
    panel.querySelector('summary').textContent = `客户订单 · orders${f.orders?.length ? ` (${f.orders.length})` : ''}${latest ? ` · ${latest.order_no} ${latest.status}` : ''}`;
    for (const order of f.orders || []) {
      const meta = [order.placed_at, order.logistics].filter(Boolean).join(' · ');
      list.append(
        el(
          'li',
          { class: 'order', 'data-order': order.card?.order_no },
          cardNode(order.card),
          meta ? el('small', { class: 'order-meta', text: meta }) : null,
          el('button', { class: 'btn order-send', type: 'button', text: '发送订单卡片 · send as card', onclick: () => !this.ended && onSendCard(order.card) }),
        ),
      );
    }
    panel.hidden = false;
  }

  submit(onSend) {
    const text = this.input.value.trim();
    if (!text || this.ended) return;
    this.input.value = '';
    onSend(text);
  }

  insert(text) {
    const { input } = this;
    const start = input.selectionStart ?? input.value.length;
    const end = input.selectionEnd ?? input.value.length;
    input.value = input.value.slice(0, start) + text + input.value.slice(end);
    input.focus();
    input.selectionStart = input.selectionEnd = start + text.length;
  }

  /** Appends a line; `who` is customer, bot, agent or system. */
  line(who, text, { history = false, id, note, rich, preview } = {}) {
    const item = el(
      'li',
      { class: `msg ${who}${history ? ' history' : ''}`, 'data-id': id },
      el('span', { class: 'who', text: note ? `${WHO[who] || who} · ${note}` : WHO[who] || who }),
      el('span', { class: 'body', text }),
      // A photo's thumbnail opens the full image over the console; a file opens in a tab.
      rich?.attachment ? viewable(attachmentNode(this.gateway, rich.attachment)) : null,
      rich?.card ? cardNode(rich.card) : null,
      preview || null,
    );
    this.log.append(item);
    this.log.scrollTop = this.log.scrollHeight;
    if (who === 'customer') this.typingLine.hidden = true;
    return item;
  }

  /** Marks one of my messages as delivered (or refused). */
  settle(id, state) {
    const who = this.log.querySelector(`[data-id="${CSS.escape(id)}"] .who`);
    if (who) who.textContent = state === 'sent' ? '我 ✓' : '我 · 未发送 not sent';
  }

  typing() {
    this.typingLine.hidden = false;
    clearTimeout(this.typingTimer);
    this.typingTimer = setTimeout(() => (this.typingLine.hidden = true), 4000);
  }

  setSla(waitingS) {
    const on = waitingS !== null;
    this.sla.hidden = !on;
    this.el.dataset.sla = String(on);
    this.tab.dataset.sla = String(on);
    if (on) this.sla.textContent = `⚠ 客户已等待 ${waitingS} 秒未获回复 · waiting ${waitingS}s for your answer (SLA)`;
  }

  setState(text) {
    this.state.hidden = !text;
    this.state.textContent = text || '';
  }

  /** The chat is no longer mine: keep it readable, remove the controls. */
  end(text) {
    this.ended = true;
    this.el.dataset.ended = 'true';
    this.setSla(null);
    this.setState(text);
    this.form.hidden = true;
    this.canned.hidden = true;
    this.transferBox.hidden = true;
    this.closeBtn.hidden = true;
    this.dismissBtn.hidden = false;
  }

  bump() {
    if (this.el.contains(document.activeElement) && document.visibilityState === 'visible') return;
    this.unread += 1;
    this.showUnread();
  }

  seen() {
    if (!this.unread) return;
    this.unread = 0;
    this.showUnread();
  }

  showUnread() {
    for (const badge of [this.badge, this.headBadge]) {
      badge.hidden = this.unread === 0;
      badge.textContent = String(this.unread);
      badge.setAttribute('aria-label', `${this.unread} 条未读 unread`);
    }
  }

  focus() {
    this.el.scrollIntoView({ block: 'nearest' });
    (this.ended ? this.dismissBtn : this.input).focus();
  }
}

/** Clicking a photo's thumbnail shows the photo over the page (Escape or a click closes it). */
function viewable(link) {
  if (!link || !link.classList.contains('att-image')) return link;
  link.addEventListener('click', (e) => {
    e.preventDefault();
    const viewer = el('div', { class: 'viewer', role: 'dialog', 'aria-label': '图片 Photo', tabindex: '-1' }, el('img', { src: link.href, alt: '' }));
    const close = () => viewer.remove();
    viewer.addEventListener('click', close);
    viewer.addEventListener('keydown', (k) => k.key === 'Escape' && close());
    document.body.append(viewer);
    viewer.focus();
  });
  return link;
}

/** The panel of an identified customer's orders (filled by `orders`), with a refresh; closed,
 * its summary line shows the latest order. */
function ordersPanel(c, onOrders) {
  if (!c.identified) return null;
  return el(
    'details',
    { class: 'orders' },
    el('summary', { text: '客户订单 · orders' }),
    el('p', { class: 'orders-note', role: 'status', text: '正在查询… · loading' }),
    el('ol', { class: 'orders-list' }),
    el('button', { class: 'btn orders-refresh', type: 'button', text: '刷新 · refresh', onclick: onOrders }),
  );
}

/** The side panel of a returning customer: their last chats in brief, and a button that asks
 * for the full earlier transcripts (`history_request`; each read is audited). */
function earlierPanel(c, onHistory) {
  const previous = c.previous || [];
  if (!c.returning || previous.length === 0) return null;
  const items = previous.map((p) => {
    const when = new Date(p.started_ms).toLocaleString('zh-CN');
    return el(
      'li',
      { class: 'earlier-item', 'data-session': p.session },
      el('strong', { text: `${when} · ${p.channel} · ${(p.agents || []).join('、') || '机器人'}` }),
      p.first_customer_message ? el('span', { class: 'q', text: `问：${p.first_customer_message}` }) : null,
      p.last_agent_message ? el('span', { class: 'a', text: `答：${p.last_agent_message}` }) : null,
      p.survey_score || p.complaint_level
        ? el('span', { class: 'meta', text: `${p.survey_score ? `评分 ${p.survey_score}` : ''}${p.complaint_level ? ` 投诉 ${p.complaint_level} 级` : ''}` })
        : null,
    );
  });
  return el(
    'details',
    { class: 'earlier', open: true },
    el('summary', { text: `历史会话 ${previous.length} 次 · earlier chats` }),
    el('ol', { class: 'earlier-list' }, items),
    el('button', { class: 'btn earlier-load', type: 'button', text: '查看完整记录 · full history', onclick: onHistory }),
    el('ol', { class: 'earlier-full' }),
  );
}
