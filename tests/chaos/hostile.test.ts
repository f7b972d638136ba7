/**
 * Chaos: the oversized-echo memory bound, measured on a real `grpo coordinator` process. Two
 * authenticated connections send 15 frames each whose `kind` is a 1 MiB string, twice. Before the fix the
 * UNKNOWN_KIND reply and the bad_frame log line repeated each value in full (8 MiB frames grew a
 * coordinator from 127 to 702 MB and its log by 252 MB); now replies and logs quote a prefix, so
 * the log stays a few KiB and the resident memory (process_resident_memory_bytes at GET /metrics)
 * grows far less than the 60 MiB sent.
 */
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { encodeMessage } from '../../src/shared/codec.js';
import { Kind, WireError } from '../../src/shared/protocol.js';
import { RawPeer, until } from '../coordinator/helpers.js';
import { sampleValue, scrape } from '../shared/metrics/helpers.js';
import { CLI, onceListening } from './chaos-helpers.js';

describe('chaos: hostile input', () => {
  it('60 frames with a 1 MiB kind: short replies, a few KiB of log, bounded RSS', async () => {
    const p = spawn(process.execPath, [CLI, 'coordinator', '--port', '0', '--token', 'tok'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, GRPO_TOKEN: '' } });
    let logBytes = 0;
    p.stderr!.on('data', (d: Buffer) => (logBytes += d.length));
    try {
      const port = await onceListening(p);
      const url = `ws://127.0.0.1:${port}`;
      const rss = async (): Promise<number> => sampleValue((await scrape(`http://127.0.0.1:${port}/metrics`)).samples, 'process_resident_memory_bytes', { role: 'coordinator' })!;
      const before = await rss();
      const logBefore = logBytes;
      const frame = encodeMessage({ kind: 'k'.repeat(1024 * 1024) } as never);
      // two rounds on fresh connections (a connection is closed after 16 bad frames): memory that
      // is only garbage not yet collected does not add up; an echo kept per frame would
      for (let round = 1; round <= 2; round++) {
        const peers = await Promise.all([0, 1].map((i) => RawPeer.join(url, 'worker', { token: 'tok', name: `hostile-${round}-${i}` })));
        for (const { peer } of peers) for (let i = 0; i < 15; i++) peer.sendRaw(frame);
        for (const { peer } of peers) await until(() => peer.all(Kind.Error).length === 15, 60_000, '15 errors');
        for (const { peer } of peers) {
          expect(peer.all(Kind.Error).every((e) => e.code === WireError.UnknownKind && e.message.length < 300)).toBe(true);
          await peer.close();
        }
      }
      const after = await rss();
      expect(logBytes - logBefore).toBeLessThan(32 * 1024);
      expect(after - before).toBeLessThan(72 * 1024 * 1024); // 60 MiB received; the unclipped echo grew ~2.4 MiB per MiB
      console.info(`coordinator RSS ${Math.round(before / 2 ** 20)} -> ${Math.round(after / 2 ** 20)} MiB, log +${logBytes - logBefore} bytes for 60 MiB of hostile frames`);
    } finally {
      p.kill('SIGKILL');
    }
  });
});
