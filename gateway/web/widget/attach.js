// The widget's photos, files and product cards (issue #18): the attach button, paste and
// drag-and-drop, a preview before sending, upload progress, and a retry that cannot send
// twice: a message's id is chosen before its upload and kept with it, so a retry (or the
// socket re-sending it after a reconnect) is the same message to the gateway, which keeps
// one copy per id; a finished upload is not uploaded again.

import { newId } from '/shared/journal.js';
import { ACCEPT, cardNode, fileOf, previewNode, upload } from '/shared/rich.js';
import { el, setNote } from './view.js';

const MAX_BYTES = 10 * 1024 * 1024;

export class Attacher {
  /** @param {object} w the widget (ui, t, journal, socket, gateway, record, save) */
  constructor(w) {
    this.w = w;
    this.file = null;
    this.files = new Map(); // message id -> File, for previews and retries on this page
    const { ui } = w;
    ui.fileInput.accept = ACCEPT;
    ui.attachBtn.addEventListener('click', () => ui.fileInput.click());
    ui.fileInput.addEventListener('change', () => {
      this.choose(ui.fileInput.files?.[0]);
      ui.fileInput.value = '';
    });
    ui.input.addEventListener('paste', (e) => {
      const file = fileOf(e.clipboardData);
      if (file) {
        e.preventDefault();
        this.choose(file);
      }
    });
    ui.panel.addEventListener('dragover', (e) => {
      e.preventDefault();
      ui.panel.classList.add('kefu-dragging');
    });
    ui.panel.addEventListener('dragleave', () => ui.panel.classList.remove('kefu-dragging'));
    ui.panel.addEventListener('drop', (e) => {
      e.preventDefault();
      ui.panel.classList.remove('kefu-dragging');
      this.choose(fileOf(e.dataTransfer));
    });
  }

  /** Shows `file` above the input, to send with the next message (or cancel). */
  choose(file) {
    const { ui, t } = this.w;
    if (!file || this.w.journal.extra.ended) return;
    if (file.size > MAX_BYTES) {
      this.w.record({ k: 'notice', text: t.tooBig });
      return;
    }
    this.file = file;
    ui.preview.replaceChildren(
      previewNode(file, 'kefu-att'),
      el('span', { class: 'kefu-preview-name', text: file.name }),
      el('button', { type: 'button', class: 'kefu-icon', 'aria-label': t.cancel, text: '×', onclick: () => this.clear() }),
    );
    ui.preview.hidden = false;
    ui.input.focus();
  }

  clear() {
    this.file = null;
    this.w.ui.preview.hidden = true;
    this.w.ui.preview.replaceChildren();
  }

  /** Sends the chosen file with `text` as its caption. */
  send(text) {
    const file = this.file;
    this.clear();
    const id = newId('c');
    this.files.set(id, file);
    const entry = { k: 'out', id, text, state: 'uploading', file: { name: file.name, type: file.type } };
    this.w.record(entry);
    this.start(entry);
  }

  /** Uploads (unless done before) and sends the message; the same id every time. */
  start(entry) {
    const { t, journal } = this.w;
    if (entry.file.attachment) return this.deliver(entry);
    const file = this.files.get(entry.id);
    if (!file || !journal.session) return this.fail(entry, file ? t.offline : t.attachAgain);
    this.mark(entry, 'uploading', t.uploading);
    const auth = ['X-Kefu-Resume-Token', journal.extra.resumeToken || ''];
    upload(this.w.gateway, journal.session, file, auth, (p) => this.note(entry, `${t.uploading} ${Math.round(p * 100)}%`))
      .then((answer) => {
        entry.file.attachment = answer.attachment_id;
        entry.file.kind = answer.kind;
        this.deliver(entry);
      })
      .catch((err) => this.fail(entry, err.status && err.message ? err.message : t.offline));
  }

  deliver(entry) {
    this.mark(entry, 'sending', this.w.t.sending);
    const frame = { type: 'message', id: entry.id, text: entry.text || '', attachment: entry.file.attachment };
    this.w.socket.sendReliable(frame);
  }

  fail(entry, why) {
    this.mark(entry, 'failed', `${this.w.t.failed}: ${why}`);
    const item = this.item(entry);
    if (item && !item.querySelector('.kefu-retry')) {
      item.append(el('button', { type: 'button', class: 'kefu-retry', text: this.w.t.retry, onclick: (e) => {
        e.currentTarget.remove();
        this.start(entry);
      } }));
    }
  }

  mark(entry, state, text) {
    entry.state = state;
    this.w.journal.save();
    this.note(entry, text, state);
  }

  note(entry, text, state = entry.state) {
    const item = this.item(entry);
    if (item) setNote(item, text, state);
  }

  item(entry) {
    return this.w.ui.log.querySelector(`[data-id="${CSS.escape(entry.id)}"]`);
  }

  /** What an outgoing entry shows besides its text. */
  extra(entry) {
    if (entry.card) return [cardNode(entry.card, 'kefu-card')];
    if (!entry.file) return [];
    const file = this.files.get(entry.id);
    return [file ? previewNode(file, 'kefu-att') : el('span', { class: 'kefu-att kefu-att-file', text: `📎 ${entry.file.name}` })];
  }

  // ---- the product the shop page shows (`data-product`, `kefu.showProduct`) ---------------

  showProduct(p) {
    const { ui, t } = this.w;
    if (!p || !p.sku || !p.title) return;
    const card = { kind: 'product', sku: String(p.sku).slice(0, 64), title: String(p.title).slice(0, 200) };
    if (p.price !== undefined && p.price !== null) card.price = String(p.price).slice(0, 64);
    for (const key of ['image_url', 'url']) {
      if (typeof p[key] === 'string' && /^https?:\/\//i.test(p[key])) card[key] = p[key];
    }
    this.product = card;
    ui.product.replaceChildren(
      cardNode(card, 'kefu-card'),
      el('button', { type: 'button', class: 'kefu-chip', text: t.sendProduct, onclick: () => this.sendProduct() }),
    );
    ui.product.hidden = false;
  }

  sendProduct() {
    if (!this.product || this.w.journal.extra.ended) return;
    const id = newId('c');
    this.w.record({ k: 'out', id, text: '', card: this.product, state: 'sending' });
    this.w.socket.sendReliable({ type: 'card', id, card: this.product });
    this.w.ui.product.hidden = true;
  }
}
