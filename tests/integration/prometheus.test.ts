/**
 * A real Prometheus server (Debian's `prometheus` package; skipped with a message when the binary
 * is absent) against our files and a short `grpo train` run on loopback:
 *
 *   Prometheus loads deploy/prometheus/alerts.yml, evaluates every rule without error, and
 *   every PromQL expression of the dashboard and the alert rules is accepted by its query API;
 *   `grpo train --metrics-port P` (compiled dist/cli.js, tiny settings, one worker) is scraped
 *   every second at P (learner and in-process coordinator) and P + 1 (the worker,
 *   localMetricsPorts); then every target is up, each role's /metrics passes `promtool check
 *   metrics`, the key series exist with their role labels, every dashboard expression returns
 *   data, and every metric an alert rule names has series.
 *
 * Without the binary the file is skipped with a message, unless GRPO_REQUIRE_TOOLS=1 (set by
 * .ci/run, which installs it): then it fails. dist/cli.js must be built (`npx tsc -p .`; npm test
 * builds it first). The whole file takes about 15-30 s on two cores.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify } from 'yaml';
import { localMetricsPorts } from '../../src/shared/metrics/server.js';
import { alertExprs, dashboardExprs, deployPath, grafanaToPromQL, metricNamesIn, toolOrSkip } from '../deploy/helpers.js';
import { freePorts } from '../shared/metrics/helpers.js';

const CLI = resolve('dist/cli.js');
const WORKERS = 1;

const prometheus = toolOrSkip('prometheus', 'the Prometheus integration test');
const promtool = toolOrSkip('promtool', 'promtool check metrics of grpo train');

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, fn: () => Promise<T | null>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v !== null) return v;
    } catch (err) {
      last = err;
    }
    await sleep(250);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

interface QueryResult {
  status: string;
  error?: string;
  data?: { resultType: string; result: { metric: Record<string, string>; value?: [number, string] }[] };
}

describe.skipIf(!prometheus)('Prometheus with deploy/ files and grpo train', () => {
  let tmp: string;
  let prom: ChildProcess;
  let api: string;
  let metricsBase: number;
  let promLog = '';

  /** An instant query, now or at `time` (Unix seconds). */
  async function query(expr: string, time?: number): Promise<QueryResult> {
    const at = time === undefined ? '' : `&time=${time}`;
    const res = await fetch(`${api}/api/v1/query?query=${encodeURIComponent(expr)}${at}`);
    return (await res.json()) as QueryResult;
  }

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'grpo-prometheus-'));
    metricsBase = await freePorts(1 + WORKERS);
    const ports = localMetricsPorts(metricsBase, WORKERS);
    const promPort = await freePorts(1);
    api = `http://127.0.0.1:${promPort}`;
    copyFileSync(deployPath('prometheus', 'alerts.yml'), join(tmp, 'alerts.yml'));
    const config = {
      global: { scrape_interval: '1s', evaluation_interval: '1s' },
      rule_files: ['alerts.yml'],
      scrape_configs: [
        {
          job_name: 'grpo',
          honor_labels: true,
          static_configs: [{ targets: [ports.learner, ...ports.workers].map((p) => `127.0.0.1:${p}`) }],
        },
      ],
    };
    writeFileSync(join(tmp, 'prometheus.yml'), stringify(config));
    prom = spawn(
      'prometheus',
      [`--config.file=${join(tmp, 'prometheus.yml')}`, `--storage.tsdb.path=${join(tmp, 'data')}`, `--web.listen-address=127.0.0.1:${promPort}`, '--log.level=warn'],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    prom.stderr!.on('data', (d: Buffer) => (promLog += d.toString()));
    await until('Prometheus to be ready', async () => ((await fetch(`${api}/-/ready`)).ok ? true : null), 20_000);
  });

  afterAll(async () => {
    if (prom && prom.exitCode === null) {
      const exited = new Promise((r) => prom.once('exit', r));
      prom.kill('SIGTERM');
      await Promise.race([exited, sleep(10_000)]);
    }
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('accepts every PromQL expression of the dashboard and the alert rules', async () => {
    const exprs = [
      ...dashboardExprs().map((e) => ({ where: `dashboard panel ${e.panel}`, expr: grafanaToPromQL(e.expr) })),
      ...alertExprs(parseYaml).map((a) => ({ where: `alert ${a.alert}`, expr: a.expr })),
    ];
    for (const { where, expr } of exprs) {
      const r = await query(expr);
      expect(r.status, `${where}: ${expr}: ${r.error ?? ''}`).toBe('success');
    }
    const bad = await query('rate(grpo_learner_steps_total[1m'); // the check is real
    expect(bad.status).toBe('error');
  });

  it('loads the alert rules and evaluates each without error', async () => {
    const names = alertExprs(parseYaml).map((a) => a.alert);
    type Rule = { name: string; health: string; lastError?: string };
    const rules = await until(
      'every alert rule to be evaluated',
      async () => {
        const body = (await (await fetch(`${api}/api/v1/rules`)).json()) as { data: { groups: { rules: Rule[] }[] } };
        const all = body.data.groups.flatMap((g) => g.rules);
        return all.length === names.length && all.every((r) => r.health !== 'unknown') ? all : null;
      },
      15_000,
    );
    expect(rules.map((r) => r.name).sort()).toEqual([...names].sort());
    for (const r of rules) expect(r.health, `${r.name}: ${r.lastError ?? ''}`).toBe('ok');
  });

  describe('scraping grpo train', () => {
    let train: ChildProcess;
    let trainLog = '';
    /**
     * A moment (Unix seconds) at which the newest scrape of every target had succeeded. The
     * queries below are evaluated there: a learner step holds the learner's event loop (the
     * tensor math is synchronous on the cpu backend), so on a loaded machine a 1 s scrape can time
     * out, and Prometheus then marks that target's series stale until its next good scrape.
     */
    let allUp = 0;
    const at = (expr: string) => query(expr, allUp);

    beforeAll(async () => {
      if (!existsSync(CLI)) throw new Error(`${CLI} is missing; build it with \`npx tsc -p .\` (npm test does)`);
      // prettier-ignore
      const args = [
        CLI, 'train', '--out', join(tmp, 'run'), '--backend', 'cpu', '--steps', '100000', '--sft-steps', '3', '--sft-batch-size', '8',
        '--model-size', 'tiny', '--workers', String(WORKERS), '--worker-capacity', '2', '--eval-samples', '4', '--eval-k', '2',
        '--eval-interval', '0', '--save-interval', '0', '--prompts-per-step', '2', '--group-size', '4', '--max-gen-len', '6',
        '--task-options', 'max_digits=1,max_depth=1', '--metrics-port', String(metricsBase),
      ];
      train = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, GRPO_TOKEN: '' } });
      train.stdout!.on('data', (d: Buffer) => (trainLog += d.toString()));
      train.stderr!.on('data', (d: Buffer) => (trainLog += d.toString()));
      const exited = new Promise<never>((_, reject) =>
        train.once('exit', (code) => reject(new Error(`grpo train exited with ${code}: ${trainLog.slice(-2000)}`))),
      );
      exited.catch(() => undefined); // also reported by trainRunning() in the tests
      const steps = until(
        'three learner steps scraped by Prometheus',
        async () => {
          const r = await query('max(grpo_learner_steps_total)');
          const v = Number(r.data?.result[0]?.value?.[1] ?? 0);
          return v >= 3 ? v : null;
        },
        90_000,
      );
      await Promise.race([steps, exited]);
      // from 2 s on, every rate() window holds two samples or more of the running learner
      const from = Date.now() / 1000 + 2;
      await sleep(3_000);
      allUp = await until(
        'a moment with every target up',
        async () => {
          const end = Date.now() / 1000;
          const expr = `count(up{job="grpo"} == 1) == ${1 + WORKERS}`;
          const res = await fetch(`${api}/api/v1/query_range?query=${encodeURIComponent(expr)}&start=${from}&end=${end}&step=0.25`);
          const body = (await res.json()) as { data?: { result: { values: [number, string][] }[] } };
          const times = body.data?.result[0]?.values.map(([t]) => t) ?? [];
          return times.length > 0 ? times[times.length - 1] : null;
        },
        30_000,
      );
    });

    /** The run must outlive the tests (--steps is far more than they take): series vanish when it ends. */
    function trainRunning(): void {
      expect(train.exitCode, `grpo train ended early: ${trainLog.slice(-2000)}`).toBeNull();
    }

    afterAll(async () => {
      if (train && train.exitCode === null) {
        const exited = new Promise((r) => train.once('exit', r));
        train.kill('SIGTERM'); // the learner checkpoints after its step; workers and coordinator stop
        await Promise.race([exited, sleep(30_000)]);
      }
    });

    it('scrapes every role: all targets up, with the role labels the processes give themselves', async () => {
      trainRunning();
      const up = await at('up{job="grpo"}');
      expect(up.data!.result.length, promLog).toBe(1 + WORKERS);
      for (const s of up.data!.result) expect(s.value![1], JSON.stringify(s.metric)).toBe('1');
      const roles = await at('count by (role) ({__name__=~"grpo_.+"})');
      expect(roles.data!.result.map((s) => s.metric.role).sort()).toEqual(['coordinator', 'learner', 'worker']);
      const instances = await at('count by (instance) (grpo_worker_connected)');
      expect(instances.data!.result).toHaveLength(WORKERS);
      expect(instances.data!.result[0].metric.instance).not.toMatch(/^127\.0\.0\.1:/); // the worker's own name, kept by honor_labels
    });

    it.skipIf(!promtool)('serves /metrics that pass promtool check metrics on every port', async () => {
      trainRunning();
      const ports = localMetricsPorts(metricsBase, WORKERS);
      for (const port of [ports.learner, ...ports.workers]) {
        const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
        const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
        expect(`${r.stdout}${r.stderr}`.trim(), `port ${port}`).toBe('');
      }
    });

    it('has the key series of every role', async () => {
      trainRunning();
      const key = [
        'grpo_learner_reward_mean', 'grpo_learner_reward_function_mean', 'grpo_learner_kl', 'grpo_learner_clip_region_ratio',
        'grpo_learner_completion_mean_length_tokens', 'grpo_learner_eval_accuracy_ratio', 'grpo_learner_policy_version',
        'grpo_learner_step_seconds_bucket', 'grpo_learner_group_staleness_bucket', 'grpo_learner_weights_publish_seconds_count',
        'grpo_worker_tokens_generated_total', 'grpo_worker_group_rollout_seconds_bucket', 'grpo_worker_weights_load_seconds_count',
        'grpo_coordinator_workers_connected', 'grpo_coordinator_group_verdicts_total', 'grpo_coordinator_queued_groups',
        'grpo_coordinator_weights_broadcast_seconds_count', 'process_resident_memory_bytes',
      ];
      for (const name of key) {
        const r = await at(`count(${name})`);
        expect(r.data!.result.length, `${name} has no series`).toBe(1);
      }
      const workers = await at('grpo_coordinator_workers_connected');
      expect(workers.data!.result[0].value![1]).toBe(String(WORKERS));
    });

    it('returns data for every dashboard expression', async () => {
      trainRunning();
      for (const { panel, expr } of dashboardExprs()) {
        const r = await at(grafanaToPromQL(expr));
        expect(r.status).toBe('success');
        expect(r.data!.result.length, `dashboard panel ${panel}: ${expr} returned no data`).toBeGreaterThan(0);
      }
    });

    it('has series for every metric the alert rules name', async () => {
      trainRunning();
      for (const { alert, expr } of alertExprs(parseYaml)) {
        for (const name of metricNamesIn(expr)) {
          const r = await at(`count(${name})`);
          expect(r.data!.result.length, `${alert}: ${name} has no series`).toBe(1);
        }
      }
    });
  });
});
