// Browser tests of customer continuity (issue #17), each on its own gateway with the store on
// and an identity secret: (1) an identified customer comes back and the console shows their
// earlier chat in the side panel, masked, with the full transcript on request; (2) outside
// business hours the widget offers the leave-a-message form, an agent answers the ticket, and
// the customer's next chat shows the reply.

import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startGateway } from './gateway.mjs';

const SECRET = 'web-tests-identity-secret-0123456789';
const KEY = 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=';
const AGENT_TOKEN = 'a01.demo-a01';
const PHONE = '13812345678';

/** An HS256 identity token for `sub`, as the shop's backend would sign it. */
function identity(sub) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const exp = Math.floor(Date.now() / 1000) + 3600;
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub, exp, name: '王小明', tier: 'vip', phone: PHONE })}`;
  return `${body}.${createHmac('sha256', SECRET).update(body).digest('base64url')}`;
}

/** A daily range (Shanghai time) that does not hold now. */
function closedRange() {
  const local = (Math.floor(Date.now() / 60_000) + 8 * 60) % 1440;
  const hhmm = (m) => `${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`;
  return `${hhmm((local + 120) % 1440)}-${hhmm((local + 180) % 1440)}`;
}

const ORDERS_SECRET = 'web-tests-orders-secret-0123456789';

/** The shop's order endpoint: checks the gateway's signature, answers one order. */
async function startShop() {
  const server = createServer((req, res) => {
    const ts = req.headers['x-kefu-timestamp'] || '';
    const expected = `v1=${createHmac('sha256', ORDERS_SECRET).update(`${ts}\nGET\n${req.url}`).digest('hex')}`;
    if (req.headers['x-kefu-signature'] !== expected) {
      res.writeHead(401).end();
      return;
    }
    const orders = [{ order_no: 'E20261111888', status: '运输中', amount: '118.00', placed_at: '2026-11-11 00:05', logistics: '顺丰 已到达杭州转运中心', items: [{ title: '保温杯', quantity: 2 }] }];
    res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ orders }));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${server.address().port}/orders`, stop: () => server.close() };
}

async function gatewayWith(bin, extra) {
  const dir = mkdtempSync(join(tmpdir(), 'kefu-cont-web-'));
  const gateway = await startGateway(bin, {
    KEFU__STORE__URL: `sqlite://${dir}/kefu.db`,
    KEFU_ENCRYPTION_KEY: KEY,
    KEFU_IDENTITY_SECRET: SECRET,
    KEFU__ROUTING__AGENT_GREETING_S: '600',
    ...extra,
  });
  return { gateway, dir };
}

async function openWidget(context, base, token) {
  const page = await context.newPage();
  await page.goto(`${base}/widget/?identity=${token}`);
  await page.getByRole('button', { name: '在线客服' }).click();
  await page.locator('.kefu-bot .kefu-text').first().waitFor();
  return page;
}

export async function continuityPages(context, bin, { step, assert, shot }) {
  await historyPanel(context, bin, { step, assert, shot });
  await leaveMessage(context, bin, { step, assert, shot });
}

async function historyPanel(context, bin, { step, assert, shot }) {
  const shop = await startShop();
  const { gateway, dir } = await gatewayWith(bin, { KEFU__INTEGRATIONS__ORDERS_URL: shop.url, KEFU_ORDERS_SECRET: ORDERS_SECRET });
  const base = gateway.base;
  const token = identity('web-shopper-1');
  const agent = await context.newPage();
  try {
    await step('continuity: an identified customer chats with an agent', async () => {
      await agent.goto(`${base}/console/`);
      await agent.getByLabel('客服令牌').fill(AGENT_TOKEN);
      await agent.getByRole('button', { name: '登录' }).click();
      await agent.getByRole('button', { name: '就绪' }).click();
      const first = await openWidget(context, base, token);
      await first.getByRole('button', { name: '转人工' }).click();
      const chat = agent.locator('article.chat');
      await chat.waitFor();
      assert(!(await chat.locator('.earlier').count()), 'no earlier chats the first time');
      await first.getByLabel('输入您的问题').fill(`我的手机${PHONE}，订单改地址`);
      await first.keyboard.press('Enter');
      await chat.locator('.msg.customer', { hasText: '订单改地址' }).waitFor();
      const box = chat.getByRole('textbox');
      await box.fill('地址已为您修改');
      await box.press('Enter');
      await first.locator('.kefu-agent', { hasText: '地址已为您修改' }).waitFor();
      await first.getByRole('button', { name: '结束会话' }).click();
      await chat.locator('.state', { hasText: '客户已离开' }).waitFor();
      await chat.getByRole('button', { name: '移除' }).click();
      await first.close();
    });

    await step('continuity: back from another page, the console shows the earlier chat, masked', async () => {
      await agent.waitForTimeout(300); // the record's batch write
      const second = await openWidget(context, base, token);
      // The widget shows the earlier conversation above the new one, masked.
      const earlier = second.locator('.kefu-earlier');
      await earlier.locator('.kefu-agent', { hasText: '地址已为您修改' }).waitFor();
      assert((await earlier.innerText()).includes('138****5678'), 'masked in the widget too');
      await shot(second, '19-widget-earlier');
      await second.getByRole('button', { name: '转人工' }).click();
      const chat = agent.locator('article.chat');
      await chat.waitFor();
      await chat.locator('.returning').waitFor();
      const panel = chat.locator('.earlier');
      await panel.locator('.earlier-item', { hasText: '地址已为您修改' }).waitFor();
      const text = await panel.innerText();
      assert(text.includes('138****5678'), `masked phone in the panel: ${text}`);
      assert(!text.includes(PHONE), 'no phone number in the panel');
      assert((await chat.locator('.chat-meta').innerText()).includes('王'), 'the vouched-for name, masked');
      // The shop's orders come in beside it (the panel's one line shows the latest).
      const orders = chat.locator('.orders');
      const latest = orders.locator('summary', { hasText: 'E20261111888 运输中' });
      await latest.waitFor();
      await panel.getByRole('button', { name: '查看完整记录' }).click();
      const full = panel.locator('.earlier-conv');
      await full.locator('.msg.customer', { hasText: '订单改地址' }).waitFor();
      assert(!(await full.innerText()).includes(PHONE), 'full transcript masked');
      await shot(agent, '20-console-history-panel');

      // The shop's orders beside the chat; one goes to the customer as an order card.
      await latest.click();
      const order = orders.locator('.order', { hasText: 'E20261111888' });
      await order.waitFor();
      assert((await orders.innerText()).includes('已到达杭州转运中心'), 'the logistics news');
      await shot(agent, '23-console-orders');
      await order.getByRole('button', { name: '发送订单卡片' }).click();
      await second.locator('.kefu-card-order', { hasText: 'E20261111888' }).waitFor();
      await chat.locator('.msg.agent .card-order', { hasText: 'E20261111888' }).waitFor();
      await second.close();
    });
  } finally {
    shop.stop();
    await agent.close();
    await gateway.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function leaveMessage(context, bin, { step, assert, shot }) {
  const { gateway, dir } = await gatewayWith(bin, { KEFU__HOURS__PRE_SALE: closedRange() });
  const base = gateway.base;
  const token = identity('night-shopper');
  try {
    await step('continuity: outside hours the widget offers to leave a message', async () => {
      const page = await openWidget(context, base, token);
      await page.getByRole('button', { name: '转人工' }).click();
      await page.locator('.kefu-status', { hasText: '下班' }).waitFor();
      const form = page.locator('.kefu-leave');
      await form.waitFor();
      await shot(page, '21-widget-offline');
      await form.getByLabel('留言内容').fill('退款什么时候到账？');
      await form.getByLabel('联系方式').fill(PHONE);
      await form.getByRole('button', { name: '提交留言' }).click();
      await page.locator('.kefu-leave-done').waitFor({ state: 'visible' });
      assert(!(await page.locator('.kefu-leave').count()), 'form replaced by the message');
      await shot(page, '22-widget-message-left');
      await page.close();
    });

    await step('continuity: an agent answers the ticket; the next chat shows the reply', async () => {
      const page = await context.newPage();
      await page.goto(`${base}/widget/`);
      const result = await page.evaluate(async (agentToken) => {
        const ws = new WebSocket(`${location.origin.replace('http', 'ws')}/ws/agent?token=${agentToken}`);
        const next = (type) => new Promise((resolve) => {
          const on = (m) => {
            const f = JSON.parse(m.data);
            if (f.type === type || f.type === 'error') {
              ws.removeEventListener('message', on);
              resolve(f);
            }
          };
          ws.addEventListener('message', on);
        });
        await next('welcome');
        ws.send(JSON.stringify({ type: 'ready' }));
        const tickets = await next('tickets');
        const ticket = tickets.items[0]?.id;
        ws.send(JSON.stringify({ type: 'ticket_claim', ticket }));
        const claimed = await next('ticket_claimed');
        ws.send(JSON.stringify({ type: 'ticket_reply', ticket, text: '您好，退款已于今天到账' }));
        const ack = await next('ack');
        ws.close();
        return { tickets, claimed, ack };
      }, AGENT_TOKEN);
      assert(result.tickets.items.length === 1, `one ticket: ${JSON.stringify(result.tickets)}`);
      assert(!JSON.stringify(result.tickets).includes(PHONE), 'ticket masked toward the agent');
      assert(result.claimed.type === 'ticket_claimed', JSON.stringify(result.claimed));
      assert(result.ack.type === 'ack', JSON.stringify(result.ack));
      await page.close();
      const back = await openWidget(context, base, token);
      const reply = back.locator('.kefu-agent', { hasText: '您好，退款已于今天到账' });
      await reply.waitFor();
      assert((await reply.locator('.kefu-note').textContent()) === '留言回复', 'marked as a reply to the message');
      await shot(back, '23-widget-ticket-reply');
      await back.close();
    });
  } finally {
    await gateway.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
