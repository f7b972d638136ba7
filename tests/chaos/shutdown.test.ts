/**
 * Chaos: one upgrade request with a wrong token and bytes right behind it, then SIGTERM. Before the
 * fix (src/coordinator/auth.ts refuseUpgrade) `grpo coordinator` exited 13 within ~50 ms, without
 * its final counters, in 9 of 10 trials: the refused socket stayed half-open and the HTTP server's
 * close() waited on it with nothing else keeping Node's event loop alive. Runs dist/cli.js.
 */
import { spawn } from 'node:child_process';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { CLI, onceListening } from './chaos-helpers.js';

const UPGRADE =
  'GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer wrong\r\n\r\n';

describe('chaos: shutdown', () => {
  it('a wrong-token upgrade with bytes behind it, then SIGTERM: exit 0 with the final counters (2 trials)', async () => {
    for (let trial = 0; trial < 2; trial++) {
      const p = spawn(process.execPath, [CLI, 'coordinator', '--port', '0', '--token', 'right'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, GRPO_TOKEN: '' } });
      const port = await onceListening(p);
      const sock = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
      sock.on('error', () => {});
      let answered = false;
      sock.on('data', () => {
        answered = true;
        if (!sock.destroyed) sock.write('y'.repeat(100)); // more bytes behind the refusal
      });
      await new Promise<void>((r) => sock.on('connect', () => r()));
      sock.write(`${UPGRADE}${'x'.repeat(100)}`);
      await expect.poll(() => answered, { timeout: 5_000 }).toBe(true);
      await new Promise((r) => setTimeout(r, 100));
      let out = '';
      p.stdout!.on('data', (d) => (out += d));
      const exited = new Promise<number | null>((resolve) => p.on('exit', (code) => resolve(code)));
      p.kill('SIGTERM');
      const code = await exited;
      sock.destroy();
      expect(code).toBe(0);
      expect(out).toMatch(/coordinator stopped: 0 groups enqueued/);
    }
  });
});
