/**
 * Every examples/*.yaml is a config the schema accepts, says on top how to run it, and names
 * things that exist: a built-in task takes its task_options, a reward module loads, and every
 * reward_weights key names a reward of the run. Files other helpers add are picked up as they
 * come: the test walks the folder.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { readConfigFile, parseConfig } from '../src/shared/config.js';
import { createTask, loadRewardModule, runRewardDefaults, taskNames } from '../src/tasks/index.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DIR = join(ROOT, 'examples');
const files = readdirSync(DIR).filter((f) => /\.ya?ml$/.test(f)).sort();

/** Task knobs that need files a run makes first (e.g. a judge checkpoint): checked for type only. */
function createOrSkip(name: string, options: Record<string, unknown>, seed: number) {
  try {
    return createTask(name, { seed, options });
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'GRPO_ERR_TASK_OPTIONS' || code === 'GRPO_ERR_UNKNOWN_TASK') throw err;
    return null; // the options parsed; the task wants something on disk (its own tests cover it)
  }
}

describe('examples/', () => {
  it('holds the example configs', () => {
    for (const f of ['arithmetic.yaml', 'heuristic.yaml', 'remote-reward.yaml', 'my-reward.yaml']) expect(files).toContain(f);
  });

  describe.each(files)('%s', (file) => {
    const path = join(DIR, file);

    it('parses with the config schema and shows its command in the opening comment', () => {
      const config = parseConfig(readConfigFile(path), path);
      expect(config.out).not.toBe('runs/grpo'); // its own output directory, not the demo's
      expect(readFileSync(path, 'utf8')).toMatch(new RegExp(`^#[^\\n]*\\n(#.*\\n)*#\\s+grpo train --config examples/${file.replace('.', '\\.')}`));
    });

    it('names a task, task options, a reward module and reward weights that exist', async () => {
      const config = parseConfig(readConfigFile(path), path);
      expect(taskNames()).toContain(config.task);
      const task = createOrSkip(config.task, config.task_options, config.seed);
      if (task === null) return;
      const moduleRewards = config.reward_module === null ? [] : await loadRewardModule(join(ROOT, config.reward_module));
      if (config.reward_module !== null) expect(existsSync(join(ROOT, config.reward_module))).toBe(true);
      const remote = config.remote_reward_url === null ? null : { name: config.remote_reward_name, weight: config.remote_reward_weight };
      const names = runRewardDefaults(task, moduleRewards, remote).map((r) => r.name);
      for (const key of Object.keys(config.reward_weights)) expect(names, `reward_weights.${key}`).toContain(key);
      expect(config.max_gen_len, 'max_gen_len leaves room for the longest reference answer').toBeGreaterThanOrEqual(task.maxCompletionTokens);
    });
  });
});
