/**
 * The learner's curriculum (config key `curriculum`): the task's difficulty rises in levels, each
 * level a set of task_options overrides, when the rolling success rate at the current level
 * reaches `threshold`.
 *
 *   level L's problems    task.example('train', p) of the task created with
 *                         { ...task_options, ...levels[L] }; every GroupSpec carries L and those
 *                         options, so workers sample under that task's grammar
 *   success               task.isCorrect of each completion (the same check as the step's
 *                         `accuracy` and the held-out evals), counted only for groups sampled at
 *                         the current level: groups already in flight when the level rose belong
 *                         to the old one
 *   rolling rate          over the last `window` such completions; a level is left only with a
 *                         full window, so one lucky batch does not raise it; a new level starts
 *                         with an empty window
 *
 * The level and its window are saved in trainer_state.json (`curriculum`) and restored on resume.
 * A resumed run regenerates its pending prompts at the restored level (prompt positions are
 * dataset positions, the problem at a position depends on the level). Held-out evals use the
 * task as task_options gives it, unchanged by the level, so baseline and final stay comparable:
 * set the curriculum's option there to the difficulty you want measured.
 */
import type { Config } from '../shared/config.js';
import { GrpoError } from '../shared/errors.js';
import type { ProtocolLogger } from '../shared/protocol.js';
import { loadTask } from '../tasks/index.js';
import type { Task, TaskExample } from '../tasks/types.js';
import type { AdmittedGroup } from './groups-inbox.js';

export type CurriculumConfig = NonNullable<Config['curriculum']>;

/** What trainer_state.json stores as `curriculum`. */
export interface CurriculumState {
  version: 1;
  level: number;
  recent: number[]; // outcomes at the current level, oldest first: 1 correct, 0 not
  raisedAt: number[]; // raisedAt[i]: the step after which level i + 1 began
}

export interface CurriculumStatus {
  level: number; // after this update
  successRate: number; // rolling, at `level`; NaN before any outcome there
  raised: boolean; // this update moved to a new level
  /** With `raised`: the rolling rate at the old level that reached the threshold. */
  raisedAtRate?: number;
}

function resumeError(msg: string): GrpoError {
  return new GrpoError('GRPO_ERR_RESUME', `curriculum state: ${msg}; use the trainer_state.json the learner wrote`);
}

/** The level and the rolling window; no tasks, no I/O. */
export class Curriculum {
  private levelNow = 0;
  private recent: number[] = [];
  private correct = 0; // sum of recent
  private raisedAt: number[] = [];

  constructor(
    readonly config: CurriculumConfig,
    private readonly base: Readonly<Record<string, unknown>>,
    state?: unknown,
  ) {
    if (state !== undefined && state !== null) this.restore(state);
  }

  get level(): number {
    return this.levelNow;
  }

  get levels(): number {
    return this.config.levels.length;
  }

  get successRate(): number {
    return this.recent.length === 0 ? NaN : this.correct / this.recent.length;
  }

  /** task_options of a level: the run's task_options with the level's overrides. */
  optionsAt(level: number): Record<string, unknown> {
    return { ...this.base, ...this.config.levels[level] };
  }

  /**
   * Adds the outcomes of groups sampled at `groups[i].level` (others than the current level are
   * ignored), then raises the level when the window is full and its rate reaches the threshold.
   * `step` is the step these outcomes were trained in (logged in raisedAt).
   */
  update(groups: readonly { level: number; outcomes: readonly boolean[] }[], step: number): CurriculumStatus {
    const w = this.config.window;
    for (const g of groups) {
      if (g.level !== this.levelNow) continue;
      for (const ok of g.outcomes) {
        this.recent.push(ok ? 1 : 0);
        this.correct += ok ? 1 : 0;
        if (this.recent.length > w) this.correct -= this.recent.shift()!;
      }
    }
    const last = this.levelNow === this.levels - 1;
    const rate = this.successRate;
    if (!last && this.recent.length >= w && rate >= this.config.threshold) {
      this.levelNow += 1;
      this.recent = [];
      this.correct = 0;
      this.raisedAt.push(step);
      return { level: this.levelNow, successRate: NaN, raised: true, raisedAtRate: rate };
    }
    return { level: this.levelNow, successRate: this.successRate, raised: false };
  }

  state(): CurriculumState {
    return { version: 1, level: this.levelNow, recent: [...this.recent], raisedAt: [...this.raisedAt] };
  }

  /** Restores a saved state. A window smaller than the saved one keeps the newest outcomes. */
  private restore(state: unknown): void {
    const s = state as Partial<CurriculumState> | null;
    if (s === null || typeof s !== 'object' || s.version !== 1) throw resumeError(`expected { version: 1, level, recent, raisedAt }, got ${JSON.stringify(state)}`);
    const level = s!.level;
    if (!Number.isInteger(level) || level! < 0 || level! >= this.levels) {
      throw resumeError(`level is ${JSON.stringify(level)} but the curriculum has ${this.levels} levels (0..${this.levels - 1})`);
    }
    if (!Array.isArray(s!.recent) || !s!.recent.every((x) => x === 0 || x === 1)) throw resumeError('recent must be an array of 0 and 1');
    if (!Array.isArray(s!.raisedAt) || !s!.raisedAt.every((x) => Number.isInteger(x) && x >= 0)) {
      throw resumeError('raisedAt must be an array of step numbers');
    }
    this.levelNow = level!;
    this.recent = s!.recent.slice(-this.config.window);
    this.correct = this.recent.reduce((a, b) => a + b, 0);
    this.raisedAt = [...s!.raisedAt];
  }
}

/** A curriculum with the task of every level, as the learner runs it. */
export class LearnerCurriculum {
  private constructor(
    readonly curriculum: Curriculum,
    private readonly tasks: readonly Task[],
  ) {}

  /**
   * Loads the task of every level up front, so a level whose options the task rejects fails at
   * start (GRPO_ERR_TASK_OPTIONS naming them), not hours later when it is reached.
   */
  static async create(config: Config, state?: unknown): Promise<LearnerCurriculum | null> {
    if (config.curriculum === null) return null;
    const curriculum = new Curriculum(config.curriculum, config.task_options, state);
    const tasks = await Promise.all(
      config.curriculum.levels.map(async (_, level) => {
        try {
          return await loadTask(config.task, { seed: config.seed, options: curriculum.optionsAt(level) });
        } catch (err) {
          const e = err as Error;
          throw new GrpoError('GRPO_ERR_CONFIG', `curriculum level ${level} (${JSON.stringify(config.curriculum!.levels[level])}): ${e.message}`, { cause: err });
        }
      }),
    );
    return new LearnerCurriculum(curriculum, tasks);
  }

  get level(): number {
    return this.curriculum.level;
  }

  /** Train problem `index` at the current level, tagged for its GroupSpec. */
  example(index: number): TaskExample & { level: number; taskOptions: Record<string, unknown> } {
    const level = this.curriculum.level;
    return { ...this.tasks[level].example('train', index), level, taskOptions: this.curriculum.optionsAt(level) };
  }

  /** Feeds a trained batch's outcomes in; logs `curriculum_level` when the level rises. */
  observe(batch: readonly AdmittedGroup[], step: number, log: ProtocolLogger): CurriculumStatus {
    const groups = batch.map((g) => {
      const level = g.spec.level ?? 0;
      const task = this.tasks[level] ?? this.tasks[0];
      return { level, outcomes: g.rollout.completions.map((c) => task.isCorrect(g.spec.prompt, c.text, g.spec.meta)) };
    });
    const status = this.curriculum.update(groups, step);
    if (status.raised) {
      log('info', 'curriculum_level', {
        step,
        curriculumLevel: status.level, // not `level`: that field of a log line is its severity
        levels: this.curriculum.levels,
        options: this.curriculum.config.levels[status.level],
        successRate: status.raisedAtRate,
        threshold: this.curriculum.config.threshold,
      });
    }
    return status;
  }

  state(): CurriculumState {
    return this.curriculum.state();
  }
}
