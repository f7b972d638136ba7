/**
 * Helpers of the deploy/ tests: the `grpo` command lines in deployment files and a dry parse of
 * them by the real CLI, the metric names PromQL expressions use, and the tools (promtool,
 * prometheus, shellcheck).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { buildProgram } from '../../src/cli.js';
import { ALL_METRICS, seriesNames } from '../../src/shared/metrics/definitions.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const deployPath = (...parts: string[]): string => join(ROOT, 'deploy', ...parts);
export const readDeploy = (...parts: string[]): string => readFileSync(deployPath(...parts), 'utf8');

/** True when `name` is available on PATH (`tool --version` exits 0). */
export function hasTool(name: string): boolean {
  const r = spawnSync(name, ['--version'], { encoding: 'utf8' });
  return r.status === 0;
}

/**
 * Whether the tests that need `name` (promtool, prometheus, shellcheck: Debian packages) run.
 * Absent, they are skipped with a warning naming `what`; with GRPO_REQUIRE_TOOLS=1 (.ci/run sets
 * it after installing them) an absent tool throws instead, so CI never passes by skipping.
 */
export function toolOrSkip(name: string, what: string): boolean {
  if (hasTool(name)) return true;
  const why = `\`${name}\` is not installed (Debian: apt-get install prometheus shellcheck; .ci/run installs them)`;
  if (process.env.GRPO_REQUIRE_TOOLS === '1') throw new Error(`${what} needs ${why}, and GRPO_REQUIRE_TOOLS=1`);
  console.warn(`skipping ${what}: ${why}`);
  return false;
}

export function run(cmd: string, args: string[], opts: { cwd?: string; input?: string; env?: NodeJS.ProcessEnv } = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 30_000, ...opts });
  return { status: r.status, output: `${r.stdout ?? ''}${r.stderr ?? ''}`.trim() };
}

// ------------------------------------------------------------------ command lines

/** Words of one simple shell command line (quotes removed; no expansion). */
export function shellWords(line: string): string[] {
  const words: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|'([^']*)'|(\S+)/g;
  for (const m of line.matchAll(re)) words.push(m[1] ?? m[2] ?? m[3]);
  return words;
}

/**
 * The argv after `grpo` of every `grpo ...` command in a small `sh -c` script (the compose and
 * Kubernetes learner/SFT scripts): split at `;`, `&&`, `||` and the if/then/else keywords.
 */
export function grpoCommandsInScript(script: string): string[][] {
  const out: string[][] = [];
  for (const part of script.replace(/\n/g, ' ').split(/;|&&|\|\||\bthen\b|\belse\b|\bfi\b/)) {
    const words = shellWords(part.trim());
    const i = words.indexOf('grpo');
    if (i >= 0) out.push(words.slice(i + 1));
  }
  return out;
}

/** Options of each subcommand of the real program: long flag -> takes a value. */
export function cliOptions(): Map<string, Map<string, boolean>> {
  const program = buildProgram();
  return new Map(program.commands.map((c) => [c.name(), new Map(c.options.map((o) => [o.long ?? '', o.required || o.optional]))]));
}

/**
 * Parses `argv` (`['worker', '--coordinator', ...]`) with the program of src/cli.ts, every action
 * replaced by a no-op: throws commander's error for an unknown command, an unknown option, a
 * missing option value or an excess argument.
 */
export async function dryParse(argv: readonly string[]): Promise<void> {
  const program = buildProgram();
  const quiet = { writeErr: () => {}, outputError: () => {} }; // the rejection is the result
  program.configureOutput(quiet);
  for (const c of program.commands) c.action(() => undefined).configureOutput(quiet);
  await program.parseAsync([...argv], { from: 'user' });
}

/** The value following `flag` in argv, or undefined. */
export function flagValue(argv: readonly string[], flag: string): string | undefined {
  const i = argv.indexOf(flag);
  return i >= 0 ? argv[i + 1] : undefined;
}

// ------------------------------------------------------------------ PromQL

const PROMQL_KEYWORDS = new Set([
  'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan',
]);

/** Metric names an expression selects (not functions, keywords, labels, strings or durations). */
export function metricNamesIn(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""') // label values
    .replace(/\{[^}]*\}/g, ' ') // label matchers
    .replace(/\[[^\]]*\]/g, ' ') // range selectors
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ') // grouping labels
    .replace(/\$\{?\w+\}?/g, ' ') // Grafana variables
    .replace(/(^|[^\w:])\d+(\.\d+)?([eE][+-]?\d+)?(ms|s|m|h|d|w|y)?\b/g, '$1 '); // numbers and durations (offset 5m)
  const names = new Set<string>();
  for (const m of stripped.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?/g)) {
    if (m[2] || PROMQL_KEYWORDS.has(m[1].toLowerCase())) continue; // a function call or keyword
    names.add(m[1]);
  }
  return [...names];
}

/** The metric names each rate()/increase()/irate() is applied to. */
export function ratedNamesIn(expr: string): string[] {
  return [...expr.matchAll(/\b(?:rate|irate|increase)\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)/g)].map((m) => m[1]);
}

/** Every series name the roles expose: ours (histogram parts included), process metrics, `up`. */
export function knownSeries(): Map<string, string> {
  const types = new Map<string, string>();
  for (const spec of ALL_METRICS) {
    types.set(spec.name, spec.type);
    for (const s of seriesNames(spec)) types.set(s, spec.type === 'histogram' ? 'histogram-part' : spec.type);
  }
  const r = new Registry();
  collectDefaultMetrics({ register: r });
  for (const m of r.getMetricsAsArray()) {
    const type = String((m as unknown as { type: string }).type);
    types.set(m.name, type);
    if (type === 'histogram') for (const part of ['bucket', 'sum', 'count']) types.set(`${m.name}_${part}`, 'histogram-part');
  }
  types.set('up', 'gauge'); // set by Prometheus for every target
  return types;
}

/** Grafana's interval variables replaced by values Prometheus accepts. */
export function grafanaToPromQL(expr: string): string {
  return expr.replace(/\$__rate_interval|\$__interval|\$__range/g, '1m');
}

/** Every PromQL expression of the dashboard, with the title of its panel. */
export function dashboardExprs(): { panel: string; expr: string }[] {
  const dash = JSON.parse(readDeploy('grafana', 'dashboards', 'grpo.json')) as { panels: { title: string; targets?: { expr: string }[] }[] };
  return dash.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })));
}

/** Every alert rule's name and expression. */
export function alertExprs(parseYaml: (text: string) => unknown): { alert: string; expr: string }[] {
  const rules = parseYaml(readDeploy('prometheus', 'alerts.yml')) as { groups: { rules: { alert: string; expr: string }[] }[] };
  return rules.groups.flatMap((g) => g.rules.map((r) => ({ alert: r.alert, expr: r.expr })));
}
