/**
 * End to end at tiny scale: `grpo train` (compiled CLI, a worker child process) on the keywords
 * task with examples/my-reward.mjs as reward module and a remote judge served by this test on
 * loopback. Proves that the heuristic components, a module's per-completion and group rewards
 * and the remote reward all reach the learner by name, are logged per step (mean and std) and
 * summarised in summary.json. Build first (`npx tsc -p .`).
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const CLI = resolve('dist/cli.js');

function run(args: string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, GRPO_TOKEN: '' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const killer = setTimeout(() => child.kill('SIGKILL'), timeoutMs); // a hung run fails instead of hanging the suite
    child.on('exit', (code) => {
      clearTimeout(killer);
      done({ code, stdout, stderr });
    });
  });
}

describe.skipIf(!existsSync(CLI))('grpo train with heuristic, module and remote rewards', () => {
  let root: string;
  let server: Server;
  let url: string;
  const requests: { reward: string; items: unknown[] }[] = [];

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'grpo-train-rewards-'));
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        const parsed = JSON.parse(body) as { reward: string; items: { completion: string }[] };
        requests.push(parsed);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ scores: parsed.items.map((it) => Math.min(1, it.completion.length / 10)) }));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as { port: number }).port}/score`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    await rm(root, { recursive: true, force: true });
  });

  it('trains, logs every reward by name with mean and std, and summarises them', async () => {
    const out = join(root, 'run');
    // prettier-ignore
    const r = await run([
      'train', '--config', 'examples/my-reward.yaml', '--out', out, '--backend', 'cpu', '--steps', '2',
      '--sft-steps', '3', '--sft-batch-size', '8', '--workers', '1', '--worker-capacity', '2', '--eval-samples', '4',
      '--eval-interval', '0', '--save-interval', '0', '--prompts-per-step', '2', '--group-size', '4', '--max-gen-len', '12',
      '--remote-reward-url', url, '--remote-reward-name', 'judge', '--remote-reward-weight', '0.5',
    ], 150_000);
    expect(r.stderr).not.toMatch(/^error GRPO_ERR/m);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/held-out accuracy on 4 keywords problems/);
    expect(r.stdout).toMatch(/rewards, first -> last fifth of the steps: total \S+ -> \S+, /);

    const names = ['brevity', 'distinct_openings', 'diversity', 'format', 'judge', 'keywords', 'length', 'repetition'];
    const summary = JSON.parse(await readFile(join(out, 'summary.json'), 'utf8'));
    expect(summary.steps).toBe(2);
    expect(Object.keys(summary.rewards).sort()).toEqual(['total', ...names].sort());
    for (const name of names) expect(typeof summary.rewards[name].last, name).toBe('number');

    const steps = (await readFile(join(out, 'metrics.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
    expect(steps).toHaveLength(2);
    for (const s of steps) {
      expect(Object.keys(s.rewards).sort()).toEqual(names);
      expect(Object.keys(s.rewardStds).sort()).toEqual(names);
      for (const name of names) expect(s.rewardStds[name]).toBeGreaterThanOrEqual(0);
    }

    // the judge saw whole groups: one request per group of 4, named by remote_reward_name
    expect(requests.length).toBeGreaterThanOrEqual(4);
    for (const q of requests) {
      expect(q.reward).toBe('judge');
      expect(q.items).toHaveLength(4);
    }
  }, 180_000);
});
