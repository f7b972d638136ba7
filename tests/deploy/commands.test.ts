/**
 * The compose file's and the Kubernetes manifests' `grpo` command lines, parsed by the real CLI
 * (src/cli.ts, actions replaced by no-ops): every subcommand and flag exists and takes the values
 * given. Ports agree across the files: the coordinator's default 7070, the learner's and the
 * workers' metrics ports, probes, Prometheus annotations and scrape targets.
 */
import { describe, expect, it } from 'vitest';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { COORDINATOR_DEFAULTS } from '../../src/coordinator/main.js';
import { DEFAULT_CONFIG, parseConfig } from '../../src/shared/config.js';
import { DEFAULT_METRICS_PORTS } from '../../src/shared/metrics/server.js';
import { cliOptions, dryParse, flagValue, grpoCommandsInScript, readDeploy } from './helpers.js';

const ROLES = ['coordinator', 'learner', 'worker'] as const;
type Role = (typeof ROLES)[number];

/** argv of a container: the image's entrypoint is `grpo` unless the command is `sh -c SCRIPT`. */
function argvsOf(command: string[] | undefined, args: string[] | undefined): string[][] {
  if (command && command[0] === '/bin/sh' && command[1] === '-c') return grpoCommandsInScript((args ?? [])[0] ?? command[2] ?? '');
  if (command && command.length > 0) throw new Error(`unexpected entrypoint ${JSON.stringify(command)}`);
  return [args ?? []];
}

interface Compose {
  services: Record<string, { command?: string[]; entrypoint?: string[]; ports?: string[]; healthcheck?: { test: string[] } }>;
}
const compose = parseYaml(readDeploy('compose', 'docker-compose.yml'), { merge: true }) as Compose;

interface K8sContainer {
  name: string;
  command?: string[];
  args?: string[];
  ports?: { name: string; containerPort: number }[];
  readinessProbe?: { httpGet: { path: string; port: string | number } };
  env?: { name: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }[];
  resources?: { limits?: Record<string, unknown>; requests?: Record<string, unknown> };
  volumeMounts?: { name: string; mountPath: string }[];
}
interface K8sObject {
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  spec: Record<string, unknown> & {
    replicas?: number;
    template?: { metadata: { annotations?: Record<string, string> }; spec: { containers: K8sContainer[]; initContainers?: K8sContainer[]; volumes?: unknown[] } };
    ports?: { port: number; targetPort: string | number }[];
    volumeClaimTemplates?: { metadata: { name: string } }[];
  };
  data?: Record<string, string>;
  stringData?: Record<string, string>;
}
const K8S_FILES = ['namespace.yaml', 'secret.yaml', 'configmap.yaml', 'coordinator.yaml', 'learner.yaml', 'workers.yaml'];
const k8s: K8sObject[] = K8S_FILES.flatMap((f) => parseAllDocuments(readDeploy('k8s', f)).map((d) => d.toJS() as K8sObject));
const workloads = k8s.filter((o) => ['Deployment', 'StatefulSet'].includes(o.kind));
const component = (o: K8sObject): string | undefined => o.metadata.labels?.['app.kubernetes.io/component'];
const workload = (role: Role): K8sObject => workloads.find((o) => component(o) === role)!;

/** Every grpo argv in the compose file and the manifests, with where it comes from. */
function allArgvs(): { where: string; argv: string[] }[] {
  const out: { where: string; argv: string[] }[] = [];
  for (const [name, s] of Object.entries(compose.services)) {
    if (s.command === undefined) continue;
    const image = (s as { image?: string }).image ?? '';
    if (!image.includes('grpo-cluster')) continue;
    for (const argv of argvsOf(s.entrypoint, s.entrypoint ? s.command : s.command)) out.push({ where: `compose service ${name}`, argv });
  }
  for (const w of workloads) {
    const spec = w.spec.template!.spec;
    for (const c of [...(spec.initContainers ?? []), ...spec.containers]) {
      for (const argv of argvsOf(c.command, c.args)) out.push({ where: `k8s ${w.metadata.name}/${c.name}`, argv });
    }
  }
  return out;
}

describe('grpo command lines in deploy/compose and deploy/k8s', () => {
  const argvs = allArgvs();

  it('are found for every role and the SFT warm start', () => {
    const subcommands = new Set(argvs.map((a) => a.argv[0]));
    for (const sub of ['sft', 'coordinator', 'learner', 'worker']) expect(subcommands.has(sub), sub).toBe(true);
    expect(argvs.length).toBeGreaterThanOrEqual(12);
  });

  it('parse with the real CLI: subcommands, flags and values exist', async () => {
    for (const { where, argv } of argvs) {
      await expect(dryParse(argv), `${where}: grpo ${argv.join(' ')}`).resolves.toBeUndefined();
    }
  });

  it('would fail on an unknown subcommand, flag or a flag without its value (the check is real)', async () => {
    for (const argv of [['trainer'], ['worker', '--bogus', '1'], ['learner', '--steps'], ['coordinator', '--steps', '3']]) {
      await expect(dryParse(argv), argv.join(' ')).rejects.toThrow();
    }
  });

  it('use only flags the subcommand declares, each followed by a value where it takes one', () => {
    const options = cliOptions();
    for (const { where, argv } of argvs) {
      const declared = options.get(argv[0]);
      expect(declared, `${where}: grpo ${argv[0]}`).toBeDefined();
      for (let i = 1; i < argv.length; i++) {
        if (!argv[i].startsWith('--')) continue;
        expect(declared!.has(argv[i]), `${where}: grpo ${argv[0]} ${argv[i]}`).toBe(true);
        if (declared!.get(argv[i])) expect(argv[i + 1] ?? '--', `${where}: value of ${argv[i]}`).not.toMatch(/^--/);
      }
    }
  });

  it('serve metrics on the learner and every worker (the flags the roles read)', () => {
    for (const { where, argv } of argvs.filter((a) => a.argv[0] === 'learner' || a.argv[0] === 'worker')) {
      expect(Number(flagValue(argv, '--metrics-port')), where).toBeGreaterThan(0);
    }
  });

  it('point the learner and the workers at the coordinator on its default port', () => {
    expect(DEFAULT_CONFIG.port).toBe(COORDINATOR_DEFAULTS.port);
    expect(DEFAULT_METRICS_PORTS.coordinator).toBe(DEFAULT_CONFIG.port);
    for (const { where, argv } of argvs) {
      if (argv[0] === 'coordinator') expect(flagValue(argv, '--port'), where).toBe(String(DEFAULT_CONFIG.port));
      if (argv[0] === 'coordinator') expect(flagValue(argv, '--host'), where).toBe('0.0.0.0');
      if (argv[0] === 'learner' || argv[0] === 'worker') expect(flagValue(argv, '--coordinator'), where).toMatch(new RegExp(`^ws://[a-z-]+:${DEFAULT_CONFIG.port}$`));
      if (argv[0] === 'learner') expect(flagValue(argv, '--metrics-port'), where).toBe(String(DEFAULT_METRICS_PORTS.learner));
      if (argv[0] === 'worker') expect(flagValue(argv, '--metrics-port'), where).toBe(String(DEFAULT_METRICS_PORTS.worker));
    }
  });

  it('keep the learner on the SFT output and resume from its own checkpoint directory', () => {
    for (const { where, argv } of argvs.filter((a) => a.argv[0] === 'learner')) {
      const sftOut = argvs.find((a) => a.where === where.replace(/learner$/, 'sft'))!;
      expect(flagValue(argv, '--checkpoint'), where).toBe(flagValue(sftOut.argv, '--out') ?? flagValue(sftOut.argv, '--resume'));
      const resume = flagValue(argv, '--resume');
      if (resume !== undefined) expect(resume, where).toBe(`${flagValue(argv, '--out')}/checkpoint`);
    }
  });
});

describe('deploy/compose', () => {
  it('runs every role, Prometheus and Grafana, with workers scalable (no fixed name or host port)', () => {
    for (const s of ['sft', 'coordinator', 'learner', 'worker', 'prometheus', 'grafana']) expect(compose.services[s], s).toBeDefined();
    const worker = compose.services.worker as { container_name?: string; ports?: string[] };
    expect(worker.container_name).toBeUndefined();
    expect(worker.ports).toBeUndefined();
    expect(compose.services.coordinator.ports).toContain(`${DEFAULT_CONFIG.port}:${DEFAULT_CONFIG.port}`);
    expect(compose.services.coordinator.healthcheck?.test.join(' ')).toContain(`127.0.0.1:${DEFAULT_CONFIG.port}/healthz`);
  });

  it('scrapes the services at the ports their commands serve', () => {
    const prom = parseYaml(readDeploy('compose', 'prometheus.yml')) as {
      scrape_configs: { job_name: string; honor_labels?: boolean; static_configs?: { targets: string[] }[]; dns_sd_configs?: { names: string[]; port: number }[] }[];
    };
    const targets = prom.scrape_configs.flatMap((j) => [
      ...(j.static_configs ?? []).flatMap((s) => s.targets),
      ...(j.dns_sd_configs ?? []).flatMap((d) => d.names.map((n) => `${n}:${d.port}`)),
    ]);
    expect(targets.sort()).toEqual(
      [`coordinator:${DEFAULT_METRICS_PORTS.coordinator}`, `learner:${DEFAULT_METRICS_PORTS.learner}`, `worker:${DEFAULT_METRICS_PORTS.worker}`].sort(),
    );
    for (const j of prom.scrape_configs) expect(j.honor_labels, j.job_name).toBe(true);
  });

  it('gives every role a valid run configuration', () => {
    expect(() => parseConfig(parseYaml(readDeploy('compose', 'grpo.yaml')), 'deploy/compose/grpo.yaml')).not.toThrow();
  });
});

describe('deploy/k8s', () => {
  it('has a coordinator Deployment and Service, a learner StatefulSet and a workers Deployment', () => {
    expect(workload('coordinator').kind).toBe('Deployment');
    expect(workload('coordinator').spec.replicas).toBe(1);
    expect(workload('learner').kind).toBe('StatefulSet');
    expect(workload('learner').spec.replicas).toBe(1);
    expect(workload('worker').kind).toBe('Deployment');
    expect(workload('worker').spec.replicas).toBeGreaterThanOrEqual(1);
    const svc = k8s.find((o) => o.kind === 'Service' && o.metadata.name === 'grpo-coordinator')!;
    expect(svc.spec.ports![0].port).toBe(DEFAULT_CONFIG.port);
    for (const { argv } of allArgvs().filter((a) => a.where.startsWith('k8s') && ['learner', 'worker'].includes(a.argv[0]))) {
      expect(flagValue(argv, '--coordinator')).toBe(`ws://${svc.metadata.name}:${DEFAULT_CONFIG.port}`);
    }
  });

  it('annotates, exposes and probes each role on the port it serves', () => {
    for (const role of ROLES) {
      const w = workload(role);
      const pod = w.spec.template!;
      const c = pod.spec.containers[0];
      const port = DEFAULT_METRICS_PORTS[role];
      expect(pod.metadata.annotations?.['prometheus.io/scrape'], role).toBe('true');
      expect(pod.metadata.annotations?.['prometheus.io/port'], role).toBe(String(port));
      expect(pod.metadata.annotations?.['prometheus.io/path'], role).toBe('/metrics');
      const named = c.ports!.find((p) => p.name === c.readinessProbe!.httpGet.port)!;
      expect(named.containerPort, role).toBe(port);
      expect(c.readinessProbe!.httpGet.path, role).toBe('/healthz');
    }
  });

  it('requests a GPU for the learner and each worker, and gives every role the token Secret', () => {
    const secret = k8s.find((o) => o.kind === 'Secret')!;
    for (const role of ROLES) {
      const c = workload(role).spec.template!.spec.containers[0];
      if (role !== 'coordinator') expect(c.resources?.limits?.['nvidia.com/gpu'], role).toBe(1);
      // webgpu runs on the driver's Vulkan ICD, which the NVIDIA toolkit mounts only with graphics
      if (role !== 'coordinator') expect(c.env!.find((e) => e.name === 'NVIDIA_DRIVER_CAPABILITIES')?.value, role).toMatch(/graphics/);
      const token = c.env!.find((e) => e.name === 'GRPO_TOKEN')!.valueFrom!.secretKeyRef!;
      expect(token.name).toBe(secret.metadata.name);
      expect(Object.keys(secret.stringData ?? secret.data ?? {})).toContain(token.key);
    }
  });

  it('keeps the learner\'s runs on a volume claim and its config in a valid ConfigMap', () => {
    const learner = workload('learner');
    const claim = learner.spec.volumeClaimTemplates![0].metadata.name;
    for (const c of [...learner.spec.template!.spec.initContainers!, ...learner.spec.template!.spec.containers]) {
      expect(c.volumeMounts!.find((m) => m.name === claim)?.mountPath, c.name).toBe('/runs');
    }
    const cm = k8s.find((o) => o.kind === 'ConfigMap')!;
    const config = parseConfig(parseYaml(cm.data!['grpo.yaml']), 'deploy/k8s/configmap.yaml');
    expect([config.backend, config.device]).toEqual(['webgpu', 0]); // one GPU per pod: its adapter 0
  });

  it('lists every manifest in kustomization.yaml', () => {
    const kust = parseYaml(readDeploy('k8s', 'kustomization.yaml')) as { resources: string[] };
    expect([...kust.resources].sort()).toEqual([...K8S_FILES].sort());
  });
});
