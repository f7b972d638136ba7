/**
 * Dockerfile and Dockerfile.gpu, read as text (no Docker daemon here): multi-stage builds whose
 * build stage compiles the native addon (required, not optional) and TypeScript, whose runtime
 * stage keeps only what runs, with `grpo` as the entrypoint the compose file and manifests rely
 * on; every COPY source exists and survives .dockerignore; the GPU image takes the WebGPU route
 * (no CUDA in the image: the Vulkan loader, and the driver's ICD through the NVIDIA toolkit).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_METRICS_PORTS } from '../../src/shared/metrics/server.js';
import { ROOT } from './helpers.js';

interface Stage {
  from: string;
  name: string | null;
  lines: string[];
}

/** Instructions (continuation lines joined) grouped by stage. */
function stages(file: string): Stage[] {
  const text = readFileSync(join(ROOT, file), 'utf8').replace(/\\\n/g, ' ');
  const out: Stage[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const from = /^FROM\s+(\S+)(?:\s+AS\s+(\S+))?/i.exec(line);
    if (from) out.push({ from: from[1], name: from[2] ?? null, lines: [] });
    else if (out.length > 0) out[out.length - 1].lines.push(line);
  }
  return out;
}

const dockerignore = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith('#'));
const ignored = (path: string): boolean => dockerignore.some((p) => path === p || path.startsWith(`${p}/`));
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
const addonPath = /const BUILT = '([^']+)'/.exec(readFileSync(join(ROOT, 'src/engine/native-addon.ts'), 'utf8'))![1];

describe.each(['Dockerfile', 'Dockerfile.gpu'])('%s', (file) => {
  const all = stages(file);
  const build = all.find((s) => s.name === 'build')!;
  const runtime = all[all.length - 1];

  it('builds in a build stage and runs from a separate runtime stage', () => {
    expect(build).toBeDefined();
    expect(runtime.name).toBe('runtime');
    const buildSteps = build.lines.join('\n');
    expect(buildSteps).toMatch(/GRPO_REQUIRE_NATIVE=1 bash scripts\/build-native\.sh/);
    expect(buildSteps).toMatch(/tsc -p tsconfig\.json/);
    expect(buildSteps).toMatch(/npm prune --omit=dev/);
    expect(buildSteps).toMatch(/libopenblas-dev/);
  });

  it('keeps only the runtime: dependencies, dist/, the addon where the engine looks for it, OpenBLAS', () => {
    const copies = runtime.lines.filter((l) => /^COPY --from=build/.test(l)).map((l) => l.split(/\s+/)[2]);
    expect(copies).toEqual(expect.arrayContaining(['/app/node_modules', '/app/dist', `/app/${addonPath}`]));
    expect(runtime.lines.join('\n')).toMatch(/libopenblas0-pthread/);
    expect(runtime.lines.join('\n')).not.toMatch(/build-essential|libopenblas-dev/);
    expect(runtime.lines.some((l) => /^USER\s+(?!root)/.test(l))).toBe(true);
  });

  it('has grpo as its entrypoint and exposes the coordinator and metrics ports', () => {
    expect(runtime.lines).toContain('ENTRYPOINT ["grpo"]');
    expect(runtime.lines.join('\n')).toMatch(/ln -s \/app\/dist\/cli\.js \/usr\/local\/bin\/grpo/);
    const exposed = runtime.lines.filter((l) => l.startsWith('EXPOSE')).flatMap((l) => l.split(/\s+/).slice(1).map(Number));
    expect(exposed.sort()).toEqual(Object.values(DEFAULT_METRICS_PORTS).sort());
  });

  it('copies only sources that exist and that .dockerignore lets through', () => {
    const sources = build.lines.filter((l) => /^COPY\s+(?!--)/.test(l)).flatMap((l) => l.split(/\s+/).slice(1, -1));
    expect(sources.length).toBeGreaterThanOrEqual(5);
    for (const src of sources) {
      expect(existsSync(join(ROOT, src)), src).toBe(true);
      expect(ignored(src), `${src} is excluded by .dockerignore`).toBe(false);
    }
    for (const heavy of ['node_modules', 'dist', 'native/build', '.git']) expect(ignored(heavy), heavy).toBe(true);
  });
});

describe('Dockerfile.gpu', () => {
  const all = stages('Dockerfile.gpu');

  it('needs no CUDA in the image: the Vulkan loader, and graphics among the driver capabilities', () => {
    const runtime = all[all.length - 1];
    expect(runtime.from).not.toMatch(/cuda/);
    expect(runtime.lines.join('\n')).toMatch(/libvulkan1/);
    expect(runtime.lines.join('\n')).toMatch(/NVIDIA_DRIVER_CAPABILITIES=\S*graphics/);
    expect(readFileSync(join(ROOT, 'Dockerfile.gpu'), 'utf8')).not.toMatch(/tfjs-node-gpu@/);
  });

  it('ships the webgpu backend and Dawn as dependencies, at the version of @tensorflow/tfjs', () => {
    expect(pkg.dependencies.webgpu).toBeDefined();
    expect(pkg.dependencies['@tensorflow/tfjs-backend-webgpu']).toBe(pkg.dependencies['@tensorflow/tfjs']);
  });
});
