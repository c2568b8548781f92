// Browser test of photos in chats (issue #18): a customer attaches a photo in the widget (with
// a preview before sending), hands off; the agent's console shows the thumbnail in the history
// and opens the photo; the agent sends a photo back and the widget shows it. On its own
// gateway with the store on (attachments are kept there, encrypted).

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import { startGateway } from './gateway.mjs';

const AGENT_TOKEN = 'a01.demo-a01';

function crc32(bytes) {
  let crc = 0xffffffff;
  for (const b of bytes) {
    crc ^= b;
    for (let i = 0; i < 8; i += 1) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

/** A `w`×`h` PNG of one colour, made here (no image files in the repository). */
function png(w, h, [r, g, b]) {
  const chunk = (type, data) => {
    const body = Buffer.concat([Buffer.from(type), data]);
    const out = Buffer.alloc(8 + data.length + 4);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc32(body), 8 + data.length);
    return out;
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  const row = Buffer.concat([Buffer.from([0]), Buffer.alloc(w * 3).map((_, i) => [r, g, b][i % 3])]);
  const raw = Buffer.concat(Array.from({ length: h }, () => row));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

const loaded = (locator) => locator.evaluate((img) => img.complete && img.naturalWidth > 0);

export async function richPage(context, bin, { step, assert, shot, waitFor }) {
  const dir = mkdtempSync(join(tmpdir(), 'kefu-rich-web-'));
  const gateway = await startGateway(bin, {
    KEFU__STORE__URL: `sqlite://${dir}/kefu.db`,
    KEFU_ENCRYPTION_KEY: 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=',
    KEFU__ROUTING__AGENT_GREETING_S: '600',
  });
  const customer = await context.newPage();
  const agent = await context.newPage();
  try {
    await step('photos: the customer attaches a photo, sees a preview, sends it', async () => {
      await customer.goto(`${gateway.base}/widget/`);
      await customer.getByRole('button', { name: '在线客服' }).click();
      await customer.locator('.kefu-bot .kefu-text').first().waitFor();
      await customer.setInputFiles('#kefu-file', { name: 'parcel.png', mimeType: 'image/png', buffer: png(120, 90, [200, 30, 30]) });
      const preview = customer.locator('.kefu-preview .kefu-att-thumb');
      await preview.waitFor();
      assert(await loaded(preview), 'preview drawn');
      await shot(customer, 'rich-01-widget-preview');
      await customer.getByLabel('输入您的问题').fill('包裹破损了');
      await customer.keyboard.press('Enter');
      const sent = customer.locator('.kefu-customer', { hasText: '包裹破损了' });
      await sent.locator('.kefu-note', { hasText: '已送达' }).waitFor();
      assert((await sent.locator('.kefu-att-thumb').count()) === 1, 'photo shown with the message');
      await customer.getByRole('button', { name: '转人工' }).click();
    });

    await step('photos: the agent sees the thumbnail in the history and opens the photo', async () => {
      await agent.goto(`${gateway.base}/console/`);
      await agent.getByLabel('客服令牌').fill(AGENT_TOKEN);
      await agent.getByRole('button', { name: '登录' }).click();
      await agent.getByRole('button', { name: '就绪' }).click();
      const thumb = agent.locator('article.chat .msg.customer.history .att-thumb');
      await thumb.waitFor();
      await waitFor(() => loaded(thumb), 'the thumbnail to load through its signed link');
      await shot(agent, 'rich-02-console-thumbnail');
      await thumb.click();
      const full = agent.locator('.viewer img');
      await full.waitFor();
      await waitFor(() => loaded(full), 'the photo to open');
      const width = await full.evaluate((img) => img.naturalWidth);
      assert(width === 120, `full photo width ${width}`);
      await shot(agent, 'rich-03-console-photo-open');
      await agent.keyboard.press('Escape');
      await agent.locator('.viewer').waitFor({ state: 'detached' });
    });

    await step('photos: the agent sends a photo and the widget shows it', async () => {
      const chat = agent.locator('article.chat');
      await chat.locator('input[type=file]').setInputFiles({ name: 'label.png', mimeType: 'image/png', buffer: png(60, 40, [30, 30, 200]) });
      await chat.locator('.msg.agent', { hasText: 'label.png' }).locator('.who', { hasText: '✓' }).waitFor();
      const got = customer.locator('.kefu-agent .kefu-att-thumb');
      await got.waitFor();
      await waitFor(() => loaded(got), 'the agent photo to load in the widget');
      await shot(customer, 'rich-04-widget-agent-photo');
    });
  } finally {
    await customer.close();
    await agent.close();
    await gateway.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
