// The demo shop page: embeds the widget exactly as a shop would; ?lang=en switches the language.
// (A file, not inline: the pages' CSP allows no inline scripts.)
(() => {
  const lang = new URLSearchParams(location.search).get('lang') === 'en' ? 'en' : 'zh';
  const link = document.getElementById('lang-switch');
  link.href = lang === 'en' ? '?lang=zh' : '?lang=en';
  link.textContent = lang === 'en' ? '中文' : 'English';
  const s = document.createElement('script');
  s.src = '/widget.js';
  s.dataset.channel = 'web';
  s.dataset.lang = lang;
  // ?identity=JWT plays the shop's backend vouching for a logged-in customer.
  const identity = new URLSearchParams(location.search).get('identity');
  if (identity) s.dataset.identity = identity;
  document.body.append(s);
})();
