// A conversation's journal, kept in sessionStorage so that a page reload redraws exactly the
// same conversation and resumes the socket where it was:
//   - `session`: the server's session id (customer) or null;
//   - `lastSeq`: the highest `seq` received; frames at or below it are never shown again;
//   - `entries`: what was rendered, in order: server frames and the client's own actions;
//   - `pending`: frames sent with an `id` and not yet acknowledged (re-sent after reconnects);
//   - `extra`: small page-specific state (e.g. the agent's wanted status).
// Rendering is always a pure function of the entries, so a reload and a live session agree.

const EMPTY = () => ({ session: null, lastSeq: 0, entries: [], pending: [], extra: {} });

export class Journal {
  /** @param {string} key sessionStorage key; @param {number} limit most entries kept */
  constructor(key, limit = 500) {
    this.key = key;
    this.limit = limit;
    this.data = EMPTY();
    try {
      const saved = JSON.parse(sessionStorage.getItem(key) || 'null');
      if (saved && Array.isArray(saved.entries)) this.data = { ...EMPTY(), ...saved };
    } catch {
      // Unreadable or blocked storage: start empty; the page still works without resume.
    }
  }

  get session() { return this.data.session; }
  set session(id) { this.data.session = id; this.save(); }
  get lastSeq() { return this.data.lastSeq; }
  set lastSeq(seq) { this.data.lastSeq = seq; }
  get entries() { return this.data.entries; }
  get pending() { return this.data.pending; }
  get extra() { return this.data.extra; }

  append(entry) {
    this.data.entries.push(entry);
    if (this.data.entries.length > this.limit) {
      this.data.entries.splice(0, this.data.entries.length - this.limit);
    }
    this.save();
  }

  /** Keeps only the entries `keep` accepts (e.g. drop an ended chat's lines). */
  retain(keep) {
    this.data.entries = this.data.entries.filter(keep);
    this.save();
  }

  addPending(frame) {
    this.data.pending.push(frame);
    this.save();
  }

  /** The frame with this id was acknowledged (or refused): stop re-sending it. */
  settle(id) {
    const before = this.data.pending.length;
    this.data.pending = this.data.pending.filter((f) => f.id !== id);
    if (this.data.pending.length !== before) this.save();
  }

  /** Forgets the conversation; `keepPending` carries unacknowledged sends into the next one. */
  reset({ keepPending = false, keepExtra = true } = {}) {
    const pending = keepPending ? this.data.pending : [];
    const extra = keepExtra ? this.data.extra : {};
    this.data = { ...EMPTY(), pending, extra };
    this.save();
  }

  save() {
    try {
      sessionStorage.setItem(this.key, JSON.stringify(this.data));
    } catch {
      // Quota or privacy mode: the live page still works, only a reload would lose history.
    }
  }
}

/** A client-chosen message id, unique enough within a session. */
export function newId(prefix) {
  const rand = Math.random().toString(36).slice(2, 8);
  return `${prefix}-${Date.now().toString(36)}-${rand}`;
}
