// Photos, files and cards in chats (issue #18), shared by the widget and the console:
// uploading (`POST /upload`, with progress) and drawing what a message carries. Links to files
// are short-lived signed URLs from the gateway; they are relative, so they are resolved
// against the gateway's origin (the widget may run on a shop's own domain).

import { el } from '/shared/dom.js';

/** Kinds the gateway takes (it checks the bytes itself; this only filters the picker). */
export const ACCEPT = 'image/jpeg,image/png,image/webp,image/gif,application/pdf';

/**
 * Uploads `file`; resolves to the gateway's answer, rejects with an Error whose `status` is
 * the HTTP status (0: no answer). `auth`: header name and value; `onProgress(0..1)`.
 */
export function upload(gateway, session, file, auth, onProgress) {
  return new Promise((resolve, reject) => {
    const q = new URLSearchParams({ session, name: file.name || 'photo' });
    const xhr = new XMLHttpRequest();
    xhr.open('POST', new URL(`/upload?${q}`, gateway).href);
    xhr.setRequestHeader(auth[0], auth[1]);
    xhr.setRequestHeader('Content-Type', file.type || 'application/octet-stream');
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress?.(e.loaded / e.total);
    xhr.onload = () => {
      let body = {};
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        // not JSON: a proxy's page; the status says enough
      }
      if (xhr.status === 200) return resolve(body);
      const err = new Error(body.message || `upload failed (${xhr.status})`);
      err.status = xhr.status;
      reject(err);
    };
    xhr.onerror = () => reject(Object.assign(new Error('network error'), { status: 0 }));
    xhr.send(file);
  });
}

/** An attachment as a message shows it: the thumbnail opening the photo, or the file's name. */
export function attachmentNode(gateway, a, cls = 'att') {
  if (!a) return null;
  const href = a.url ? new URL(a.url, gateway).href : undefined;
  if (a.kind === 'image' && a.thumb_url) {
    const img = el('img', { class: `${cls}-thumb`, src: new URL(a.thumb_url, gateway).href, alt: a.name || 'photo', loading: 'lazy' });
    return el('a', { class: `${cls} ${cls}-image`, href, target: '_blank', rel: 'noopener', title: a.name }, img);
  }
  const size = a.bytes ? ` (${Math.max(1, Math.round(a.bytes / 1024))} KB)` : '';
  return el('a', { class: `${cls} ${cls}-file`, href, target: '_blank', rel: 'noopener' }, `📄 ${a.name || 'file'}${size}`);
}

/** A local preview of a file not sent yet (or sent from this page). */
export function previewNode(file, cls = 'att') {
  if (file && file.type?.startsWith('image/')) {
    return el('img', { class: `${cls}-thumb`, src: URL.createObjectURL(file), alt: file.name || 'photo' });
  }
  return el('span', { class: `${cls} ${cls}-file` }, `📄 ${file?.name || 'file'}`);
}

/** A product or order card. Only http(s) links are drawn (the gateway checks that too). */
export function cardNode(card, cls = 'card') {
  if (!card) return null;
  const safe = (u) => (typeof u === 'string' && /^https?:\/\//i.test(u) ? u : undefined);
  if (card.kind === 'product') {
    const img = safe(card.image_url) ? el('img', { class: `${cls}-img`, src: card.image_url, alt: '' }) : null;
    const title = safe(card.url)
      ? el('a', { href: card.url, target: '_blank', rel: 'noopener', text: card.title })
      : el('span', { text: card.title });
    return el(
      'div',
      { class: `${cls} ${cls}-product` },
      img,
      el('div', { class: `${cls}-body` }, el('strong', {}, title), card.price ? el('span', { class: `${cls}-price`, text: `¥${card.price}` }) : null, el('small', { text: card.sku })),
    );
  }
  if (card.kind === 'order') {
    const items = (card.items || []).map((i) => el('li', { text: `${i.title}${i.quantity ? ` ×${i.quantity}` : ''}${i.price ? ` ¥${i.price}` : ''}` }));
    return el(
      'div',
      { class: `${cls} ${cls}-order` },
      el('strong', { text: `订单 Order ${card.order_no}` }),
      el('span', { class: `${cls}-status`, text: card.status }),
      items.length ? el('ul', {}, items) : null,
      card.amount ? el('span', { class: `${cls}-price`, text: `¥${card.amount}` }) : null,
    );
  }
  return null;
}

/** The first file of a paste or a drop, if any. */
export function fileOf(transfer) {
  const files = transfer?.files;
  return files && files.length ? files[0] : null;
}
