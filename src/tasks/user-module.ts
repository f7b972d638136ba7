/**
 * Imports a user's module (a task, or reward functions) from a file path, relative to the working
 * directory: JavaScript as it is, TypeScript after stripping its types.
 *
 * Node 20 cannot import `.ts` files itself, so a `.ts`/`.mts` module is transpiled with the
 * `typescript` package (a development dependency of this project: `npm install` brings it) into
 * a hidden `.mjs` file beside the original, imported, and the file deleted. Beside the original,
 * so that its imports of packages and of `.js`/`.mjs` files resolve as they would from the
 * original; its imports of other `.ts` files do not (compile such a project to JavaScript first).
 * Each process and thread imports its own copy (the name carries pid, thread id and a random
 * part), so the piscina threads of a worker can load a module at the same time.
 */
import { randomBytes } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { threadId } from 'node:worker_threads';
import { GrpoError, type ErrorCode } from '../shared/errors.js';

const TS_FILE = /\.(m?ts|cts)$/;

/** True for a string that names a module file rather than a built-in task or reward. */
export function looksLikeModulePath(name: string): boolean {
  return name.includes('/') || name.includes('\\') || /\.(m?js|cjs|m?ts|cts)$/.test(name);
}

async function transpiledCopy(file: string, what: string, code: ErrorCode): Promise<string> {
  let ts: typeof import('typescript');
  try {
    ts = (await import('typescript')).default;
  } catch (err) {
    throw new GrpoError(code, `${what} ${file} is TypeScript, and the typescript package is not installed here; run npm install, or compile it to .js`, {
      cause: err,
    });
  }
  const source = await readFile(file, 'utf8');
  const out = ts.transpileModule(source, {
    fileName: file,
    reportDiagnostics: true,
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, sourceMap: false, inlineSourceMap: true },
  });
  const syntax = (out.diagnostics ?? []).find((d) => d.category === ts.DiagnosticCategory.Error);
  if (syntax !== undefined) {
    throw new GrpoError(code, `${what} ${file} does not parse: ${ts.flattenDiagnosticMessageText(syntax.messageText, ' ')}`);
  }
  const copy = join(dirname(file), `.${basename(file)}.${process.pid}-${threadId}-${randomBytes(4).toString('hex')}.grpo.mjs`);
  await writeFile(copy, out.outputText);
  return copy;
}

/**
 * The module's namespace object. Throws `code` naming the file when it cannot be read, parsed or
 * evaluated.
 */
export async function importUserModule(path: string, what: string, code: ErrorCode): Promise<Record<string, unknown>> {
  const file = resolve(path);
  let copy: string | null = null;
  try {
    if (TS_FILE.test(file)) copy = await transpiledCopy(file, what, code);
    return (await import(pathToFileURL(copy ?? file).href)) as Record<string, unknown>;
  } catch (err) {
    if (err instanceof GrpoError) throw err;
    throw new GrpoError(code, `cannot import ${what} ${path}: ${(err as Error).message}`, { cause: err });
  } finally {
    if (copy !== null) await rm(copy, { force: true });
  }
}
