/**
 * The learner's checkpoints. Two directories under the run's output directory, each a complete
 * Hugging Face-loadable checkpoint (src/model/checkpoint.ts, written atomically):
 *
 *   <out>/checkpoint   the latest state, replaced every save_interval steps, at the end and on
 *                      SIGTERM/SIGINT: weights, optimizer.safetensors (AdamW moments) and
 *                      trainer_state.json. `--resume <out>/checkpoint` continues from it.
 *   <out>/best         the weights with the best held-out greedy accuracy so far (the baseline
 *                      included), with trainer_state.json but without the optimizer: for eval and
 *                      deployment, not for resuming.
 *
 * trainer_state.json (phase "grpo"): step (steps done), policyVersion, dataCursor (see
 * data-cursor.ts: every prompt handed out but not trained, including admitted groups still in the
 * buffer, goes out again first on resume), rng (the learner's Rng state), runId, the cumulative
 * group counters, the eval history's last and best entries, the curriculum's level and rolling
 * window (curriculum.ts; null without a curriculum), the run key (latest only: the learner's proof
 * to the coordinator that it is the run's, see src/coordinator/learner-slot.ts), and the resolved config (without the token:
 * a resumed learner takes it from --token or GRPO_TOKEN again).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Config } from '../shared/config.js';
import { GrpoError } from '../shared/errors.js';
import { CHECKPOINT_FILES, loadCheckpoint, saveCheckpoint, type Checkpoint, type TrainerState } from '../model/checkpoint.js';
import type { LlamaModel } from '../model/llama.js';
import type { NamedHostTensors, Tokenizer } from '../model/types.js';
import { checkpointAdapters, type LoraPolicy } from './lora-policy.js';
import type { RngState } from '../shared/rng.js';
import type { CurriculumState } from './curriculum.js';
import { DataCursor, type DataCursorState } from './data-cursor.js';
import { EMPTY_COUNTS, type InboxCounts } from './groups-inbox.js';

export { publicConfig } from '../shared/config.js';

export const LATEST_DIR = 'checkpoint';
export const BEST_DIR = 'best';

export interface EvalRecord {
  step: number;
  policyVersion: number;
  accuracy: number; // greedy, held-out
  passAtK: number | null;
  k: number;
  samples: number;
}

export interface LearnerTrainerState extends TrainerState {
  phase: 'grpo';
  runId: string;
  runKey?: string; // proves a resumed learner is the run's (learner-slot.ts); absent in best/ and older checkpoints
  epoch?: number; // the resume epoch the saving learner ran in (docs/protocol.md, "Resume epochs"); absent in older checkpoints
  step: number; // optimizer steps done (the next step's index)
  policyVersion: number;
  dataCursor: DataCursorState;
  rng: RngState;
  config: Config;
  groups: InboxCounts; // cumulative over the whole run, resumes included
  baseline: EvalRecord | null; // the eval before the first step
  lastEval: EvalRecord | null;
  best: EvalRecord | null; // what <out>/best holds
  curriculum: CurriculumState | null; // null without a curriculum (and in checkpoints from before it)
}


export function latestDir(out: string): string {
  return join(out, LATEST_DIR);
}

export function bestDir(out: string): string {
  return join(out, BEST_DIR);
}

export interface SaveInput {
  model: LlamaModel;
  lora?: LoraPolicy | null; // LoRA: the adapters are saved (PEFT format), not the frozen base
  tokenizer: Tokenizer;
  state: LearnerTrainerState;
  /** AdamW state (trainer.exportOptimizerState()); left out for `best`. */
  optimizer?: NamedHostTensors;
}

export async function saveLearnerCheckpoint(dir: string, x: SaveInput): Promise<void> {
  await saveCheckpoint(dir, {
    config: x.model.config,
    // under LoRA only the adapters are written; the base stays where adapter_config.json points
    weights: x.lora ? new Map() : await x.model.toHostTensors(),
    ...(x.lora ? { adapters: await checkpointAdapters(x.lora) } : {}),
    tokenizer: x.tokenizer,
    ...(x.optimizer ? { optimizer: x.optimizer } : {}),
    trainerState: x.state,
  });
}

export interface ResumePoint {
  checkpoint: Checkpoint; // weights, tokenizer, optimizer
  state: LearnerTrainerState;
  cursor: DataCursor;
}

function resumeError(dir: string, what: string): GrpoError {
  return new GrpoError('GRPO_ERR_RESUME', `${dir}: ${what}; resume from the ${LATEST_DIR}/ directory a grpo learner wrote`);
}

/** Validates the learner fields of a trainer_state.json (after parseTrainerState's basic checks). */
export function learnerState(raw: TrainerState | undefined, dir: string): LearnerTrainerState {
  if (raw === undefined) throw resumeError(dir, `no ${CHECKPOINT_FILES.trainerState}`);
  if (raw.phase !== 'grpo') throw resumeError(dir, `trainer_state.json phase is ${JSON.stringify(raw.phase)}, not "grpo" (an SFT checkpoint is a --checkpoint, not a --resume)`);
  if (typeof raw.runId !== 'string' || raw.runId === '') throw resumeError(dir, 'trainer_state.json has no runId');
  const rng = raw.rng;
  if (!Array.isArray(rng) || rng.length !== 4 || !rng.every((w) => Number.isInteger(w) && w >= 0 && w < 2 ** 32)) {
    throw resumeError(dir, `trainer_state.json rng is ${JSON.stringify(rng)}, expected 4 uint32 words`);
  }
  if (raw.config === null || typeof raw.config !== 'object') throw resumeError(dir, 'trainer_state.json has no config');
  const groups = { ...EMPTY_COUNTS, ...(raw.groups as Partial<InboxCounts> | undefined) };
  return {
    ...(raw as LearnerTrainerState),
    groups,
    baseline: (raw.baseline as EvalRecord | null | undefined) ?? null,
    lastEval: (raw.lastEval as EvalRecord | null | undefined) ?? null,
    best: (raw.best as EvalRecord | null | undefined) ?? null,
    curriculum: (raw.curriculum as CurriculumState | null | undefined) ?? null, // validated by Curriculum
  };
}

/** Loads everything a resumed learner needs from `dir`, or throws GRPO_ERR_RESUME saying what is missing. */
export async function loadResumePoint(dir: string): Promise<ResumePoint> {
  const checkpoint = await loadCheckpoint(dir, { withOptimizer: true });
  const state = learnerState(checkpoint.trainerState, dir);
  if (checkpoint.optimizer === undefined) throw resumeError(dir, `no ${CHECKPOINT_FILES.optimizer} (a ${BEST_DIR}/ checkpoint cannot be resumed)`);
  let cursor: DataCursor;
  try {
    cursor = DataCursor.fromState(state.dataCursor);
  } catch (err) {
    throw resumeError(dir, (err as Error).message);
  }
  return { checkpoint, state, cursor };
}

/** The run config saved in `dir`'s trainer_state.json (read alone, without the weights). */
export async function savedRunConfig(dir: string): Promise<Record<string, unknown>> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(join(dir, CHECKPOINT_FILES.trainerState), 'utf8'));
  } catch (err) {
    throw resumeError(dir, `cannot read ${CHECKPOINT_FILES.trainerState}: ${(err as Error).message}`);
  }
  const config = (raw as { config?: unknown } | null)?.config;
  if (config === null || typeof config !== 'object' || Array.isArray(config)) throw resumeError(dir, 'trainer_state.json has no config');
  return config as Record<string, unknown>;
}
