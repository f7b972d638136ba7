/** Helpers of the chaos suite: the built CLI, waiting for a spawned coordinator's URL. */
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));
if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build (tsc) before the chaos suite`);

/** Resolves with the port of a spawned `grpo coordinator` once it prints its URL. */
export function onceListening(p: ChildProcess, timeoutMs = 20_000): Promise<number> {
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`coordinator did not listen within ${timeoutMs} ms: ${out}`)), timeoutMs);
    const onData = (d: Buffer): void => {
      out += d.toString();
      const m = /ws:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (m !== null) {
        clearTimeout(timer);
        p.stdout!.off('data', onData);
        resolve(Number(m[1]));
      }
    };
    p.stdout!.on('data', onData);
    p.on('exit', (code) => reject(new Error(`coordinator exited ${code} before listening: ${out}`)));
  });
}
