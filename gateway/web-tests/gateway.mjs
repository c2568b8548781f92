// Starts the real gateway for the browser tests: a free loopback port, the admin API on, the
// conversation store off (it would need an encryption key), logs kept for a failure report.

import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const ADMIN_TOKEN = 'web-tests-admin-token-of-32-chars';

/** The gateway binary: $KEFU_GATEWAY_BIN, or kefu-gateway built now in the debug profile
 * (under $CARGO_TARGET_DIR when set, else target/). */
export function gatewayBinary() {
  if (process.env.KEFU_GATEWAY_BIN) return process.env.KEFU_GATEWAY_BIN;
  const built = spawnSync('cargo', ['build', '-p', 'gateway', '--bin', 'kefu-gateway'], {
    cwd: ROOT,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (built.status !== 0) throw new Error('cargo build -p gateway failed');
  const targetDir = process.env.CARGO_TARGET_DIR || join(ROOT, 'target');
  const bin = join(targetDir, 'debug', 'kefu-gateway');
  if (!existsSync(bin)) throw new Error(`no gateway binary at ${bin}`);
  return bin;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Starts the gateway (with `extraEnv` over the test settings) and waits until /readyz
 * answers; returns {base, stop, logs}. */
export async function startGateway(bin, extraEnv = {}) {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const logs = [];
  const child = spawn(bin, ['--listen', `127.0.0.1:${port}`], {
    cwd: ROOT,
    env: {
      ...process.env,
      KEFU__SERVER__ADMIN_TOKEN: ADMIN_TOKEN,
      KEFU__STORE__URL: '',
      // Short enough that the test sees the console's SLA warning.
      KEFU__ROUTING__FIRST_RESPONSE_SLA_S: '2',
      RUST_LOG: process.env.RUST_LOG || 'warn',
      ...extraEnv,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.on('data', (d) => logs.push(String(d)));
  child.stderr.on('data', (d) => logs.push(String(d)));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`gateway exited at start:\n${logs.join('')}`);
    try {
      const response = await fetch(`${base}/readyz`);
      if (response.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`gateway not ready in 60 s:\n${logs.join('')}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  const stop = async () => {
    if (child.exitCode === null) child.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
    if (child.exitCode === null) child.kill('SIGKILL');
  };
  return { base, stop, logs };
}
