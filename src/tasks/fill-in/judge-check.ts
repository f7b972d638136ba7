/**
 * The judge checks that need no model: kept apart from judge.ts (which loads TensorFlow.js and a
 * checkpoint) so that importing the fill-in task, as every reward thread of every rollout worker
 * does through tasks/index.ts, does not load tfjs; judge.ts is imported on the judge's first use.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { GrpoError } from '../../shared/errors.js';

export function judgeError(dir: string, what: string): GrpoError {
  return new GrpoError('GRPO_ERR_JUDGE_CHECKPOINT', `judge checkpoint ${dir}: ${what}; train one with \`grpo judge-train --out ${dir}\``);
}

/**
 * A cheap synchronous check that `dir` holds a judge checkpoint (config.json, and a
 * trainer_state.json of phase "judge"), so a run with a wrong judge_checkpoint fails when its
 * task is created rather than at its first reward. The full check happens in Judge.load.
 */
export function checkJudgeCheckpoint(dir: string): void {
  const abs = resolve(dir);
  if (!existsSync(join(abs, 'config.json'))) throw judgeError(dir, `no config.json in ${abs}`);
  let state: Partial<{ phase: string }>;
  try {
    state = JSON.parse(readFileSync(join(abs, 'trainer_state.json'), 'utf8')) as Partial<{ phase: string }>;
  } catch (err) {
    throw judgeError(dir, `cannot read trainer_state.json (${(err as Error).message})`);
  }
  if (state.phase !== 'judge') {
    throw judgeError(dir, `trainer_state.json has phase ${JSON.stringify(state.phase)}, not "judge": this is not a judge checkpoint`);
  }
}
