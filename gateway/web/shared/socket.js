// A WebSocket that comes back by itself and never shows a frame twice.
//
// Every server frame carries `seq`; the journal remembers the highest one, the URL of each
// (re)connection passes it (`last_seq`), and a frame at or below it is dropped, so a replay
// after a reconnect only adds what was missed. Frames with `seq` 0 (a `session_expired` notice)
// are not numbered and always delivered. Frames sent with an `id` stay in the journal's
// `pending` list until the server acknowledges them, and are re-sent after every reconnect
// (the server recognises the id and does not store them twice).

const BACKOFF_MS = [300, 1000, 2000, 4000, 8000];

export class ResumableSocket {
  /**
   * @param {object} o
   * @param {() => string} o.url builds the URL of the next connection (reads the journal)
   * @param {import('./journal.js').Journal} o.journal
   * @param {(frame: object) => void} o.onFrame a new (never seen) frame
   * @param {(status: string, info: object) => void} [o.onStatus] connecting/open/closed
   */
  constructor({ url, journal, onFrame, onStatus = () => {} }) {
    this.url = url;
    this.journal = journal;
    this.onFrame = onFrame;
    this.onStatus = onStatus;
    this.ws = null;
    this.attempt = 0;
    this.everOpened = false;
    this.stopped = true;
    this.timer = null;
    this.restarting = false; // the server said `reconnect`
    this.queue = []; // unnumbered frames waiting for the socket (request_human, survey, …)
    window.addEventListener('online', () => this.reconnectNow());
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  /** No more reconnects (the conversation is over, or the user signed out). */
  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000, 'done');
    this.ws = null;
  }

  get isOpen() { return this.ws?.readyState === WebSocket.OPEN; }

  reconnectNow() {
    if (this.stopped) return;
    clearTimeout(this.timer);
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close(4000, 'reconnect');
    else this.connect();
  }

  connect() {
    clearTimeout(this.timer);
    this.onStatus('connecting', { attempt: this.attempt });
    const ws = new WebSocket(this.url());
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.everOpened = true;
      this.attempt = 0;
      this.onStatus('open', {});
      // Whatever was not acknowledged before the drop goes again, in the original order.
      for (const frame of this.journal.pending) ws.send(JSON.stringify(frame));
      for (const frame of this.queue.splice(0)) ws.send(JSON.stringify(frame));
    };
    ws.onmessage = (event) => this.receive(event.data);
    ws.onclose = (event) => {
      if (this.ws !== ws) return; // an older socket we replaced
      this.ws = null;
      this.onStatus('closed', { opened, everOpened: this.everOpened, code: event.code });
      if (this.stopped) return;
      // A deploy (`reconnect`, close 1012): resume at once, spread a little so that a node's
      // customers do not all arrive at the same millisecond.
      if (event.code === 1012 || this.restarting) {
        this.restarting = false;
        this.attempt = 0;
        this.timer = setTimeout(() => this.connect(), 50 + Math.random() * 250);
        return;
      }
      const delay = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
      this.attempt += 1;
      this.timer = setTimeout(() => this.connect(), delay * (0.8 + Math.random() * 0.4));
    };
  }

  receive(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return; // the server only sends JSON; ignore anything else
    }
    if (frame.type === 'reconnect') {
      // The node is restarting: it closes next (1012) and the session resumes elsewhere.
      this.restarting = true;
      return;
    }
    const seq = Number(frame.seq) || 0;
    if (seq > 0) {
      if (seq <= this.journal.lastSeq) return; // already shown before the reconnect
      this.journal.lastSeq = seq;
    }
    if (frame.type === 'ack' || (frame.type === 'error' && frame.id)) {
      this.journal.settle(frame.id);
    }
    this.onFrame(frame);
    this.journal.save();
  }

  /** Sends now if connected, else when the socket next opens (not re-sent after that). */
  send(frame) {
    if (this.isOpen) this.ws.send(JSON.stringify(frame));
    else this.queue.push(frame);
  }

  /** Sends a frame with an `id`, re-sending it after reconnects until acknowledged. */
  sendReliable(frame) {
    this.journal.addPending(frame);
    if (this.isOpen) this.ws.send(JSON.stringify(frame));
  }

  /** Sends only if connected (typing indicators: stale ones are worthless). */
  sendVolatile(frame) {
    if (this.isOpen) this.ws.send(JSON.stringify(frame));
  }
}

/** The ws:// or wss:// base of an http(s) gateway URL. */
export function wsBase(httpBase) {
  const url = new URL(httpBase);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.origin;
}
