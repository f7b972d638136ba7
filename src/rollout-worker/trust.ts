/**
 * What a worker lets a RunSpec make it do. The RunSpec arrives over the wire, and whoever holds
 * the learner slot writes it, so a worker never imports code or sends a secret only because a
 * RunSpec asks: a task or reward module loads only from a file or folder in the worker's own
 * `allowed_modules` (built-in tasks by name are always fine), and a remote reward is called
 * (with this worker's GRPO_REMOTE_REWARD_TOKEN) only at a URL under one of the worker's own
 * `allowed_reward_urls` or equal to its GRPO_REMOTE_REWARD_URL. Anything else fails the spec with
 * GRPO_ERR_NOT_ALLOWED, naming the flag that would allow it.
 */
import { realpathSync } from 'node:fs';
import { isAbsolute, relative, resolve } from 'node:path';
import { GrpoError } from '../shared/errors.js';
import type { RunSpec } from '../shared/protocol.js';
import { looksLikeModulePath } from '../tasks/user-module.js';

export interface WorkerTrust {
  modules: readonly string[]; // files or folders (resolved against the worker's working directory)
  rewardUrls: readonly string[]; // URL prefixes, e.g. https://judge.internal:8443/score
}

/** Config list values: a YAML list, or a comma-separated string (as a flag). */
export function listOf(value: string | readonly string[]): string[] {
  const items = typeof value === 'string' ? value.split(',') : [...value];
  return items.map((s) => s.trim()).filter((s) => s !== '');
}

/** The trust of a worker process: its config lists plus env GRPO_REMOTE_REWARD_URL. */
export function workerTrust(modules: string | readonly string[], rewardUrls: string | readonly string[], env: NodeJS.ProcessEnv = process.env): WorkerTrust {
  const urls = listOf(rewardUrls);
  if (env.GRPO_REMOTE_REWARD_URL) urls.push(env.GRPO_REMOTE_REWARD_URL);
  return { modules: listOf(modules), rewardUrls: urls };
}

/** A path with symbolic links resolved where the file exists (so a link cannot lead outside a folder). */
function real(path: string): string {
  const abs = resolve(path);
  try {
    return realpathSync(abs);
  } catch {
    return abs; // not there (yet): the import fails later with its own code
  }
}

function moduleAllowed(path: string, trust: WorkerTrust): boolean {
  const file = real(path);
  return trust.modules.some((allowed) => {
    const dir = real(allowed);
    const rel = relative(dir, file);
    return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
  });
}

/** A URL under a prefix: same origin, and the path starts at a segment boundary of the prefix's. */
function urlAllowed(url: string, trust: WorkerTrust): boolean {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return false;
  }
  return trust.rewardUrls.some((prefix) => {
    let p: URL;
    try {
      p = new URL(prefix);
    } catch {
      return false;
    }
    if (u.origin !== p.origin) return false;
    const base = p.pathname.endsWith('/') ? p.pathname : `${p.pathname}/`;
    return u.pathname === p.pathname || u.pathname.startsWith(base);
  });
}

const clip = (s: string): string => (s.length > 200 ? `${JSON.stringify(s.slice(0, 200))}...` : JSON.stringify(s));

/** Throws GRPO_ERR_NOT_ALLOWED when the spec would make this worker import code or call a URL it does not allow. */
export function checkSpecTrust(spec: RunSpec, trust: WorkerTrust): void {
  const modules = [
    ['task module', spec.task.name],
    ['reward module', spec.rewards.module ?? null],
  ] as const;
  for (const [what, path] of modules) {
    if (path === null || !looksLikeModulePath(path)) continue;
    if (!moduleAllowed(path, trust)) {
      throw new GrpoError(
        'GRPO_ERR_NOT_ALLOWED',
        `RunSpec asks this worker to import ${what} ${clip(path)}, which is not under its allowed_modules; start the worker with --allowed-modules <file or folder> to allow it`,
      );
    }
  }
  const remote = spec.rewards.remote ?? null;
  if (remote !== null && !urlAllowed(remote.url, trust)) {
    throw new GrpoError(
      'GRPO_ERR_NOT_ALLOWED',
      `RunSpec asks this worker to call remote reward ${clip(remote.url)}, which is not under its allowed_reward_urls (nor its GRPO_REMOTE_REWARD_URL); start the worker with --allowed-reward-urls <url prefix> to allow it`,
    );
  }
}
