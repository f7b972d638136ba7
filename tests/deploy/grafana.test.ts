/**
 * deploy/grafana: the provisioning YAML parses and points where the compose stack mounts the
 * dashboards; the dashboard has the panels the issue lists, a sane layout, a data source
 * variable, and PromQL that names only exported metrics and, with promtool installed, parses.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify } from 'yaml';
import { dashboardExprs, grafanaToPromQL, toolOrSkip, knownSeries, metricNamesIn, ratedNamesIn, readDeploy, run } from './helpers.js';

const promtool = toolOrSkip('promtool', 'the promtool checks of the dashboard');

interface Panel {
  id: number;
  type: string;
  title: string;
  description?: string;
  gridPos: { h: number; w: number; x: number; y: number };
  datasource?: { type: string; uid: string };
  targets?: { expr: string; refId: string; datasource?: { uid: string } }[];
}
const dashboard = JSON.parse(readDeploy('grafana', 'dashboards', 'grpo.json')) as {
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: { name: string; type: string; query: string }[] };
};
const exprs = dashboardExprs();

const tmp = mkdtempSync(join(tmpdir(), 'grpo-grafana-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('PromQL name extraction (the helper the checks rely on)', () => {
  it('finds metric names, not functions, keywords, labels or variables', () => {
    const expr = 'histogram_quantile(0.95, sum by (le) (rate(grpo_worker_group_rollout_seconds_bucket{role="worker"}[$__rate_interval]))) / on(instance) up and x_total offset 5m';
    expect(metricNamesIn(expr).sort()).toEqual(['grpo_worker_group_rollout_seconds_bucket', 'up', 'x_total']);
    expect(ratedNamesIn(expr)).toEqual(['grpo_worker_group_rollout_seconds_bucket']);
  });

  it('knows the series types: counters, histogram parts, gauges, process metrics and up', () => {
    const known = knownSeries();
    expect(known.get('grpo_learner_steps_total')).toBe('counter');
    expect(known.get('grpo_learner_step_seconds_bucket')).toBe('histogram-part');
    expect(known.get('grpo_learner_kl')).toBe('gauge');
    expect(known.get('process_cpu_seconds_total')).toBe('counter');
    expect(known.get('up')).toBe('gauge');
  });
});

describe('deploy/grafana provisioning', () => {
  it('provides a Prometheus data source and loads dashboards from where compose mounts them', () => {
    const ds = parseYaml(readDeploy('grafana', 'provisioning', 'datasources', 'prometheus.yml')) as { datasources: { type: string; url: string }[] };
    expect(ds.datasources[0].type).toBe('prometheus');
    expect(ds.datasources[0].url).toBe('http://prometheus:9090');
    const provider = parseYaml(readDeploy('grafana', 'provisioning', 'dashboards', 'grpo.yml')) as { providers: { type: string; options: { path: string } }[] };
    const compose = parseYaml(readDeploy('compose', 'docker-compose.yml'), { merge: true }) as { services: { grafana: { volumes: string[] } } };
    const mount = compose.services.grafana.volumes.find((v) => v.startsWith('../grafana/dashboards:'))!;
    expect(mount.split(':')[1]).toBe(provider.providers[0].options.path);
  });
});

describe('deploy/grafana/dashboards/grpo.json', () => {
  it('has the panels a person training with GRPO looks at first', () => {
    const titles = dashboard.panels.map((p) => p.title);
    for (const t of ['Reward', 'Accuracy', 'KL and entropy', 'Clip fractions', 'Completion length', 'Throughput', 'Staleness', 'Workers, leases and queue', 'Weights publish, broadcast and load time']) {
      expect(titles, t).toContain(t);
    }
    for (const p of dashboard.panels.filter((x) => x.type !== 'row')) expect(p.description?.length ?? 0, p.title).toBeGreaterThan(20);
  });

  it('describes every panel in docs/metrics.md', () => {
    const doc = readDeploy('..', 'docs', 'metrics.md');
    for (const p of dashboard.panels.filter((x) => x.type === 'timeseries')) expect(doc, p.title).toContain(`**${p.title}**`);
  });

  it('lays panels out on the 24-column grid without overlaps, with unique ids', () => {
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const cells = new Set<string>();
    for (const p of dashboard.panels) {
      const g = p.gridPos;
      expect(g.x + g.w, p.title).toBeLessThanOrEqual(24);
      for (let x = g.x; x < g.x + g.w; x++) {
        for (let y = g.y; y < g.y + g.h; y++) {
          expect(cells.has(`${x},${y}`), `${p.title} overlaps at ${x},${y}`).toBe(false);
          cells.add(`${x},${y}`);
        }
      }
    }
  });

  it('queries through its data source variable, so it works with any Prometheus', () => {
    const variable = dashboard.templating.list.find((v) => v.type === 'datasource')!;
    expect(variable.query).toBe('prometheus');
    for (const p of dashboard.panels.filter((x) => x.targets)) {
      expect(p.datasource?.uid, p.title).toBe(`\${${variable.name}}`);
      for (const t of p.targets!) expect(t.datasource?.uid, p.title).toBe(`\${${variable.name}}`);
    }
  });

  it('uses only metrics the roles export, and rate() only on counters and histograms', () => {
    const known = knownSeries();
    expect(exprs.length).toBeGreaterThanOrEqual(40);
    for (const { panel, expr } of exprs) {
      const names = metricNamesIn(expr);
      expect(names.length, `${panel}: ${expr}`).toBeGreaterThan(0);
      for (const name of names) expect(known.has(name), `${panel}: ${name}`).toBe(true);
      for (const name of ratedNamesIn(expr)) expect(['counter', 'histogram-part'], `${panel}: rate of ${name}`).toContain(known.get(name));
    }
  });

  it.skipIf(!promtool)('has PromQL that parses (promtool check rules on the expressions as recording rules)', () => {
    const rules = { groups: [{ name: 'dashboard', rules: exprs.map((e, i) => ({ record: `grpo_dashboard:expr_${i}`, expr: grafanaToPromQL(e.expr) })) }] };
    const file = join(tmp, 'dashboard-rules.yml');
    writeFileSync(file, stringify(rules));
    const r = run('promtool', ['check', 'rules', file]);
    expect(r.status, r.output).toBe(0);
    expect(r.output).toMatch(new RegExp(`SUCCESS: ${exprs.length} rules found`));
  });
});
