/**
 * A refused upgrade must not leave a socket behind. Before the fix, a client that sent bytes right
 * behind a wrong-token upgrade request (and kept its side open) left a half-open socket the HTTP
 * server waited for, so close() never finished and `grpo coordinator` exited 13 on SIGTERM
 * without its final counters (tests/chaos/shutdown.test.ts runs that through the CLI).
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { CoordinatorHandle } from '../../src/coordinator/main.js';
import { startTestCoordinator } from './helpers.js';

let coord: CoordinatorHandle | null = null;
afterEach(async () => {
  await coord?.close();
  coord = null;
});

const UPGRADE = (token: string): string =>
  'GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
  `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer ${token}\r\n\r\n`;

describe('refused upgrades', () => {
  it('destroys the socket of a wrong-token upgrade followed by more bytes, so close() completes', async () => {
    coord = await startTestCoordinator({ token: 'right' });
    // allowHalfOpen: the client never ends its side, as a hostile or broken client would not
    const sock = net.connect({ port: coord.port, host: '127.0.0.1', allowHalfOpen: true });
    let response = '';
    const closed = new Promise<number>((resolve) => sock.on('close', () => resolve(Date.now())));
    sock.on('error', () => {});
    sock.on('data', (d) => {
      response += d.toString();
    });
    // bytes keep coming behind the refusal; on a socket the server has closed, they get a reset
    const writer = setInterval(() => {
      if (!sock.destroyed) sock.write('y'.repeat(1024));
    }, 20);
    closed.finally(() => clearInterval(writer));
    await new Promise<void>((r) => sock.on('connect', () => r()));
    sock.write(UPGRADE('wrong') + 'x'.repeat(4096));
    const t0 = Date.now();
    const closedAt = await Promise.race([closed, new Promise<number>((r) => setTimeout(() => r(-1), 3_000))]);
    clearInterval(writer);
    sock.destroy();
    expect(closedAt).toBeGreaterThan(0); // the server destroyed it
    expect(response).toMatch(/^HTTP\/1\.1 401 Unauthorized/);
    expect(closedAt - t0).toBeLessThan(1_500);
    const c0 = Date.now();
    await coord.close();
    expect(Date.now() - c0).toBeLessThan(1_500);
    coord = null;
  });
});
