// kefu widget loader: the one tag a shop adds to its pages.
//
//   <script src="https://kefu.example.com/widget.js" data-gateway="https://kefu.example.com"
//           data-channel="web" data-lang="zh" defer></script>
//
// data-gateway: the gateway's http(s) URL (default: where this script came from);
// data-channel: web, app, h5 or mini_program (default web); data-lang: zh or en (default zh);
// data-open: present to open the panel at once;
// data-product: JSON of the product the page shows ({"sku","title","price","image_url","url"}),
// which the customer can send to the agent as a card; pages that change product call
// `kefu.showProduct({...})` (calls made before the widget loaded are kept and applied).
// data-open: present to open the panel at once; data-identity: the shop's signed token (HS256
// JWT) for its logged-in customer, so their chats follow them across pages and channels.
// A classic script (not a module) so that it can read its own data- attributes; it adds the
// stylesheet and loads the widget's modules from the gateway.
(() => {
  const script = document.currentScript;
  const data = script ? script.dataset : {};
  const gateway = data.gateway || (script ? new URL(script.src, location.href).origin : location.origin);
  const opts = {
    gateway,
    channel: data.channel || 'web',
    lang: data.lang === 'en' ? 'en' : 'zh',
    open: data.open !== undefined,
    product: parseProduct(data.product),
    identity: data.identity || '',
  };
  window.kefu = window.kefu || { queued: [], showProduct: (p) => window.kefu.queued.push(p) };
  const style = document.createElement('link');
  style.rel = 'stylesheet';
  style.href = new URL('/widget/widget.css', gateway).href;
  document.head.append(style);
  const start = () =>
    import(new URL('/widget/app.js', gateway).href)
      .then((m) => m.mount(opts))
      .catch((err) => console.error('kefu widget failed to load', err));
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
  function parseProduct(text) {
    try {
      return text ? JSON.parse(text) : null;
    } catch {
      return null;
    }
  }
})();
