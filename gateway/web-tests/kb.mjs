// Browser test of the knowledge-base page /kb/ (issue #19): a customer question the bot
// misses shows up as a cluster; one click adds it as a paraphrase of an entry; the try box
// then answers it with that entry. On its own gateway, with the store on (the KB tools keep
// misses and edits there) and the first miss handed off.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ADMIN_TOKEN, startGateway } from './gateway.mjs';

const QUESTION = '下午三点前拍的今天能走吗';
const ENTRY = 'ship-time-zh';

export async function kbPage(context, bin, { step, assert, shot, waitFor }) {
  const dir = mkdtempSync(join(tmpdir(), 'kefu-kb-web-'));
  const gateway = await startGateway(bin, {
    KEFU__STORE__URL: `sqlite://${dir}/kefu.db`,
    KEFU_ENCRYPTION_KEY: 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=',
    KEFU__HANDOFF__FIRST_MISS: 'handoff',
  });
  const page = await context.newPage();
  try {
    await step('kb: a customer question the bot misses', async () => {
      await page.goto(`${gateway.base}/kb/`);
      const frames = await page.evaluate(async (question) => {
        const ws = new WebSocket(`${location.origin.replace('http', 'ws')}/ws/customer?lang=zh`);
        const seen = [];
        await new Promise((resolve, reject) => {
          ws.onmessage = (m) => {
            const f = JSON.parse(m.data);
            seen.push(f.type);
            if (f.type === 'greeting') ws.send(JSON.stringify({ type: 'message', id: 'c-1', text: question }));
            if (f.type === 'handoff' || f.type === 'bot_answer') resolve();
          };
          ws.onerror = reject;
          setTimeout(resolve, 5000);
        });
        ws.close();
        return seen;
      }, QUESTION);
      assert(frames.includes('handoff') && !frames.includes('bot_answer'), `frames: ${frames}`);
    });

    await step('kb: the page shows the miss and adds it as a paraphrase', async () => {
      await page.getByLabel('管理令牌').fill(ADMIN_TOKEN);
      await page.getByRole('button', { name: '打开 · Open' }).click();
      const cluster = page.locator('.miss', { hasText: QUESTION });
      await waitFor(async () => {
        if (await cluster.count()) return true;
        await page.getByRole('button', { name: '刷新 · Refresh' }).click();
        await new Promise((r) => setTimeout(r, 300));
        return false;
      }, 'the missed question in a cluster');
      await cluster.locator('select.paraphrase-of').selectOption(ENTRY);
      await shot(page, '20-kb-misses');
      await cluster.getByRole('button', { name: '加为该条目的说法 · Add as paraphrase' }).click();
      await page.locator('.notice', { hasText: ENTRY }).waitFor();
    });

    await step('kb: the try box now answers it with that entry', async () => {
      await page.locator('#try-text').fill(QUESTION);
      await page.getByRole('button', { name: '试 · Try' }).click();
      await page.locator('.try-result .decision[data-decision="answer"]').waitFor();
      const top = await page.locator('.try-result li').first().getAttribute('data-entry');
      assert(top === ENTRY, `top match ${top}`);
      await shot(page, '21-kb-try');
    });
  } finally {
    await page.close().catch(() => {});
    await gateway.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
