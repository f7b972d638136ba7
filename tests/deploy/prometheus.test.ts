/**
 * deploy/prometheus and deploy/compose/prometheus.yml: the YAML parses; with promtool installed
 * (CI installs Debian's prometheus package), `promtool check config`, `check rules` and the alert
 * unit tests `test rules` pass; every alert names only metrics the roles export and the issue's
 * alerts all exist; scrape targets use the roles' ports.
 */
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { DEFAULT_METRICS_PORTS } from '../../src/shared/metrics/server.js';
import { alertExprs, deployPath, toolOrSkip, knownSeries, metricNamesIn, ratedNamesIn, readDeploy, run } from './helpers.js';

const promtool = toolOrSkip('promtool', 'the promtool checks of deploy/prometheus');

interface ScrapeConfig {
  job_name: string;
  honor_labels?: boolean;
  static_configs?: { targets: string[] }[];
  file_sd_configs?: { files: string[] }[];
  kubernetes_sd_configs?: { role: string; namespaces?: { names: string[] } }[];
  relabel_configs?: { source_labels?: string[]; action?: string; regex?: string; target_label?: string }[];
}
interface PromConfig {
  rule_files: string[];
  scrape_configs: ScrapeConfig[];
}

const local = parseYaml(readDeploy('prometheus', 'prometheus.yml')) as PromConfig;
const kubernetes = parseYaml(readDeploy('prometheus', 'prometheus-kubernetes.yml')) as PromConfig;
const alerts = alertExprs(parseYaml);

const tmp = mkdtempSync(join(tmpdir(), 'grpo-prom-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('scrape configurations', () => {
  it('scrape the coordinator, the learner and workers at their ports on one machine', () => {
    const targets = local.scrape_configs.flatMap((j) => (j.static_configs ?? []).flatMap((s) => s.targets));
    expect(targets).toContain(`127.0.0.1:${DEFAULT_METRICS_PORTS.coordinator}`);
    expect(targets).toContain(`127.0.0.1:${DEFAULT_METRICS_PORTS.learner}`);
    expect(targets).toContain(`127.0.0.1:${DEFAULT_METRICS_PORTS.worker}`);
    expect(local.scrape_configs.some((j) => j.file_sd_configs !== undefined)).toBe(true); // SLURM
    expect(local.rule_files).toEqual(['alerts.yml']);
  });

  it('discover the pods of deploy/k8s by their labels and annotations', () => {
    const job = kubernetes.scrape_configs.find((j) => j.kubernetes_sd_configs)!;
    expect(job.kubernetes_sd_configs![0]).toEqual({ role: 'pod', namespaces: { names: ['grpo'] } });
    const keeps = job.relabel_configs!.filter((r) => r.action === 'keep');
    expect(keeps.map((r) => [r.source_labels![0], r.regex])).toEqual([
      ['__meta_kubernetes_pod_label_app_kubernetes_io_part_of', 'grpo-cluster'],
      ['__meta_kubernetes_pod_annotation_prometheus_io_scrape', 'true'],
    ]);
    const targets = job.relabel_configs!.map((r) => r.target_label);
    expect(targets).toEqual(expect.arrayContaining(['__metrics_path__', '__address__']));
  });

  it('keep the role and instance labels of every process (honor_labels)', () => {
    for (const j of [...local.scrape_configs, ...kubernetes.scrape_configs]) expect(j.honor_labels, j.job_name).toBe(true);
  });

  it.skipIf(!promtool)('pass promtool check config (the compose one beside the alerts, as mounted)', () => {
    let r = run('promtool', ['check', 'config', deployPath('prometheus', 'prometheus.yml')]);
    expect(r.output).toMatch(/SUCCESS/);
    expect(r.status, r.output).toBe(0);
    copyFileSync(deployPath('compose', 'prometheus.yml'), join(tmp, 'prometheus.yml'));
    copyFileSync(deployPath('prometheus', 'alerts.yml'), join(tmp, 'alerts.yml'));
    r = run('promtool', ['check', 'config', join(tmp, 'prometheus.yml')]);
    expect(r.status, r.output).toBe(0);
  });

  it.skipIf(!promtool)('pass promtool check config for Kubernetes where promtool has Kubernetes discovery', () => {
    const r = run('promtool', ['check', 'config', deployPath('prometheus', 'prometheus-kubernetes.yml')]);
    if (/field kubernetes_sd_configs not found/.test(r.output)) {
      console.warn('this promtool is built without Kubernetes discovery (Debian\'s is): prometheus-kubernetes.yml checked as YAML only');
      return;
    }
    expect(r.status, r.output).toBe(0);
  });
});

describe('alert rules', () => {
  it('include every alert the issue asks for, each with a severity, a summary and a description', () => {
    const names = alerts.map((a) => a.alert);
    for (const name of ['GrpoNoWorkersConnected', 'GrpoLearnerStalled', 'GrpoStalenessAtBound', 'GrpoRewardNaN', 'GrpoRewardStdZero', 'GrpoKLHigh']) {
      expect(names, name).toContain(name);
    }
    const rules = (parseYaml(readDeploy('prometheus', 'alerts.yml')) as { groups: { rules: unknown[] }[] }).groups.flatMap((g) => g.rules) as {
      alert: string;
      labels: { severity: string };
      annotations: { summary: string; description: string };
    }[];
    for (const r of rules) {
      expect(['critical', 'warning'], r.alert).toContain(r.labels.severity);
      expect(r.annotations.summary.length, r.alert).toBeGreaterThan(10);
      expect(r.annotations.description.length, r.alert).toBeGreaterThan(40);
    }
  });

  it('use only metrics the roles export, and rate() only on counters and histograms', () => {
    const known = knownSeries();
    for (const { alert, expr } of alerts) {
      const names = metricNamesIn(expr);
      expect(names.length, alert).toBeGreaterThan(0);
      for (const name of names) expect(known.has(name), `${alert}: ${name}`).toBe(true);
      for (const name of ratedNamesIn(expr)) expect(['counter', 'histogram-part'], `${alert}: rate of ${name}`).toContain(known.get(name));
    }
  });

  it('are described in docs/metrics.md', () => {
    const doc = readDeploy('..', 'docs', 'metrics.md');
    for (const { alert } of alerts) expect(doc, alert).toContain(`\`${alert}\``);
  });

  it.skipIf(!promtool)('pass promtool check rules', () => {
    const r = run('promtool', ['check', 'rules', deployPath('prometheus', 'alerts.yml')]);
    expect(r.output).toMatch(new RegExp(`SUCCESS: ${alerts.length} rules found`));
    expect(r.status, r.output).toBe(0);
  });

  it.skipIf(!promtool)('fire on their problem and stay quiet on a healthy run (promtool test rules)', () => {
    const r = run('promtool', ['test', 'rules', deployPath('prometheus', 'alerts.test.yml')]);
    expect(r.output).toMatch(/SUCCESS/);
    expect(r.status, r.output).toBe(0);
  });
});
