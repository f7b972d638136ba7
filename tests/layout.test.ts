/**
 * The house's import direction, kept by a test (README "Layout"):
 *
 *   shared <- engine <- model <- grpo / tasks / optim <- eval <- offline / roles <- commands <- cli, index
 *
 * A folder may import only from the folders listed for it below; the roles (coordinator,
 * rollout-worker, learner) never import each other, and src/shared imports nothing from any other
 * folder of src/. A new folder must be given its place here.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = path.resolve(__dirname, '../src');

const BASE = ['shared'];
const ALLOWED: Record<string, string[]> = {
  shared: BASE,
  engine: [...BASE, 'engine'],
  model: [...BASE, 'engine', 'model'],
  grpo: [...BASE, 'engine', 'model', 'grpo'],
  tasks: [...BASE, 'engine', 'model', 'tasks'],
  optim: [...BASE, 'engine', 'model', 'optim'],
  eval: [...BASE, 'engine', 'model', 'tasks', 'eval'],
  offline: [...BASE, 'engine', 'model', 'tasks', 'optim', 'grpo', 'eval', 'offline'],
  coordinator: [...BASE, 'coordinator'],
  'rollout-worker': [...BASE, 'engine', 'model', 'tasks', 'grpo', 'rollout-worker'],
  learner: [...BASE, 'engine', 'model', 'tasks', 'grpo', 'optim', 'eval', 'learner'],
};

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? sourceFiles(p) : e.name.endsWith('.ts') ? [p] : [];
  });
}

/** The top folder of src/ a path lies in, or 'root' for src/*.ts. */
function folderOf(file: string): string {
  const rel = path.relative(SRC, file).split(path.sep);
  return rel.length === 1 ? 'root' : rel[0]!;
}

/** Every relative import or re-export of a file, resolved to a path. */
function relativeImports(file: string): string[] {
  const text = fs.readFileSync(file, 'utf8');
  const specs = [...text.matchAll(/(?:from|import)\s*\(?\s*['"](\.{1,2}\/[^'"]+)['"]/g)].map((m) => m[1]!);
  return specs.map((s) => path.resolve(path.dirname(file), s));
}

/** The relative imports and re-exports that load a module at run time (`import type` is erased). */
function runtimeImports(file: string): string[] {
  const text = fs.readFileSync(file, 'utf8');
  const specs = [...text.matchAll(/^(?:import|export)\s+(?!type\b)[^;]*?from\s*['"](\.{1,2}\/[^'"]+)['"]/gms)].map((m) => m[1]!);
  return specs.map((s) => path.resolve(path.dirname(file), s).replace(/\.js$/, '.ts'));
}

describe('src/ layout', () => {
  const files = sourceFiles(SRC);

  it('every top folder of src/ has its place in the import order', () => {
    const folders = fs.readdirSync(SRC, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
    expect(folders.filter((f) => !(f in ALLOWED) && f !== 'commands')).toEqual([]);
  });

  it('imports go only in the documented direction', () => {
    const violations: string[] = [];
    for (const file of files) {
      const from = folderOf(file);
      if (from === 'root' || from === 'commands') continue; // the top: may import anything
      for (const target of relativeImports(file)) {
        const to = folderOf(target);
        if (!ALLOWED[from]!.includes(to)) violations.push(`${path.relative(SRC, file)} imports ${path.relative(SRC, target)}`);
      }
    }
    expect(violations).toEqual([]);
  });

  it('no two files of src/ load each other (commands/eval.ts and eval-compare.ts share eval-checkpoint.ts)', () => {
    const imports = new Map(files.map((f) => [f, new Set(runtimeImports(f))]));
    const mutual: string[] = [];
    for (const [a, targets] of imports) {
      for (const b of targets) if (a < b && imports.get(b)?.has(a)) mutual.push(`${path.relative(SRC, a)} <-> ${path.relative(SRC, b)}`);
    }
    expect(imports.get(path.join(SRC, 'commands/eval.ts'))).toContain(path.join(SRC, 'commands/eval-compare.ts')); // the check sees imports
    expect(mutual).toEqual([]);
  });

  it('the rule catches a violation (the checker itself works)', () => {
    expect(ALLOWED.shared).not.toContain('model');
    expect(folderOf(path.join(SRC, 'shared/protocol.ts'))).toBe('shared');
    expect(relativeImports(path.join(SRC, 'model/types.ts')).map((t) => folderOf(t))).toContain('shared');
  });
});
