/**
 * What a rollout worker holds for one run: the RunSpec's tokenizer, task and reward pool, the
 * model built from the spec's config, and the weights version loaded into it. The worker loop
 * calls every method between sampling calls, never during one, so nothing here is replaced
 * while a batch uses it.
 *
 * A RunSpec is applied part by part:
 *   - a new runId: everything is rebuilt and the model is dropped until the run's weights arrive;
 *   - the same runId, another model config or tokenizer: the model is dropped the same way;
 *   - the same runId, another task, reward weights or reward limits: a new reward pool;
 *   - sampling settings: just remembered;
 *   - an identical spec (the learner re-sends it after a reconnect): nothing.
 */
import { performance } from 'node:perf_hooks';
import { GrpoError, toGrpoError } from '../shared/errors.js';
import { parseLlamaConfig } from '../model/checkpoint-config.js';
import { LlamaModel, type AdapterPath } from '../model/llama.js';
import { llamaParamShapes } from '../model/llama-params.js';
import { baseFingerprint, isAdapterName, LoraAdapters, mergeNamedAdapters, namedAdapterTargets } from '../model/lora.js';
import { loadTokenizer } from '../model/tokenizer.js';
import type { LlamaConfig, NamedHostTensors, Tokenizer } from '../model/types.js';
import type { AdapterInfo, ProtocolLogger, RunSpec } from '../shared/protocol.js';
import { loadTask } from '../tasks/index.js';
import type { Task } from '../tasks/index.js';
import { RewardPool } from './reward-pool.js';
import type { RolloutContext } from './rollout.js';
import { checkSpecTrust } from './trust.js';
import type { WorkerTrust } from './trust.js';

export interface RunStateOptions {
  rewardThreads: number; // piscina threads of each reward pool (config reward_threads)
  loraSampling?: AdapterPath; // LoRA: adapters merged into the weights (default) or beside them (config lora_sampling)
  trust: WorkerTrust; // what a spec may make this worker import or call (trust.ts)
  log: ProtocolLogger;
}

/** What applySpec rebuilt. */
export interface SpecChange {
  runId: string;
  replaced: boolean; // a new run: everything rebuilt
  model: boolean; // the model was dropped (new config or tokenizer); weights must come again
  rewards: boolean; // a new task and reward pool
}

interface Built {
  config: LlamaConfig;
  tokenizer: Tokenizer;
}

interface Scoring {
  task: Task;
  pool: RewardPool;
  /** The task under other options (curriculum levels), by JSON of the options; for grammars. */
  variants: Map<string, Promise<Task>>;
}

/** Distinct task options kept per run: a curriculum has a handful of levels. */
const MAX_TASK_VARIANTS = 32;

const modelKey = (s: RunSpec): string => JSON.stringify([s.model, s.tokenizer]);
const rewardsKey = (s: RunSpec): string => JSON.stringify([s.task, s.rewardWeights, s.rewards]);

/**
 * The LoRA base a worker holds: merged sampling keeps it on the host to merge each adapter version
 * into; side-path sampling keeps it only in the model (the adapters sit beside it), tensors null.
 */
interface LoraBase {
  version: number;
  fingerprint: string; // baseFingerprint of the base weights
  tensors: NamedHostTensors | null; // by HF name (merged sampling)
}

export class RunState {
  private spec: RunSpec | null = null;
  private built: Built | null = null;
  private scoring: Scoring | null = null;
  private model: LlamaModel | null = null;
  private loaded: number | null = null; // weights version in `model`
  private loadedEpoch = 0; // its resume epoch (docs/protocol.md, "Resume epochs")
  private loraBase: LoraBase | null = null; // LoRA: the base that adapter payloads apply to
  private adapters: LoraAdapters | null = null; // side-path sampling: attached to `model`
  /** Why the current spec cannot be used (bad config, unknown task, ...); null when it can. */
  error: GrpoError | null = null;

  constructor(private readonly opts: RunStateOptions) {}

  get runId(): string | null {
    return this.spec?.runId ?? null;
  }

  /** The weights version the model holds, or null before the first load (and after a model reset). */
  get policyVersion(): number | null {
    return this.loaded;
  }

  /** Whether weights can be loaded now: a usable spec is applied. */
  get canLoadWeights(): boolean {
    return this.built !== null && this.error === null;
  }

  /**
   * Applies a RunSpec (see the file comment); null when it equals the current one. It does not
   * throw: on a failure (bad model config, tokenizer, task or reward weights) no model or pool is
   * kept for the spec and `error` says why, until a later spec fixes it.
   */
  async applySpec(spec: RunSpec): Promise<SpecChange | null> {
    const old = this.spec;
    if (old !== null && this.error === null && JSON.stringify(old) === JSON.stringify(spec)) return null;
    const replaced = old === null || old.runId !== spec.runId || this.error !== null;
    const newModel = replaced || modelKey(old) !== modelKey(spec);
    const newRewards = replaced || rewardsKey(old) !== rewardsKey(spec);
    this.spec = spec;
    this.error = null;
    if (newModel) {
      this.dropModel();
      this.built = null;
    }
    if (newRewards) await this.closeScoring();
    try {
      checkSpecTrust(spec, this.opts.trust); // before anything is imported or called
      if (newModel) this.built = await buildModelParts(spec);
      if (newRewards) this.scoring = await this.buildScoring(spec);
    } catch (err) {
      this.error = toGrpoError(err, 'GRPO_ERR_RUN_SPEC');
      this.dropModel();
      this.built = null;
      await this.closeScoring();
    }
    return { runId: spec.runId, replaced, model: newModel, rewards: newRewards };
  }

  /**
   * Loads one weights version: builds the model on the first load, else overwrites its weights
   * in place (no new tensors). Returns the seconds it took. Throws GRPO_ERR_CHECKPOINT_MISMATCH
   * (names or shapes that do not fit the spec's config; the previous weights stay) or
   * GRPO_ERR_RUN_SPEC when no usable spec is applied.
   */
  loadWeights(version: number, tensors: NamedHostTensors, adapter?: AdapterInfo, epoch = 0): number {
    if (this.built === null || this.error !== null) {
      throw new GrpoError('GRPO_ERR_RUN_SPEC', `weights v${version} arrived but no usable RunSpec is applied; they wait for one`);
    }
    const t0 = performance.now();
    if (adapter === undefined) {
      this.setModelWeights(tensors);
      this.detachAdapters();
      this.loraBase = null; // a full payload ends the LoRA chain
    } else if (this.opts.loraSampling === 'side') {
      this.loadSide(version, tensors, adapter);
    } else {
      this.loadMerged(version, tensors, adapter);
    }
    this.loaded = version;
    this.loadedEpoch = epoch;
    return (performance.now() - t0) / 1000;
  }

  /** LoRA, merged: the adapters folded into the base (no extra work per token). */
  private loadMerged(version: number, tensors: NamedHostTensors, adapter: AdapterInfo): void {
    const shapes = llamaParamShapes(this.built!.config);
    if (adapter.base === version) {
      const base = this.checkedBase(version, tensors, adapter, true);
      this.setModelWeights(mergeNamedAdapters(shapes, base.tensors!, adapterPart(tensors), adapter.r, adapter.alpha));
      this.loraBase = base;
    } else {
      const held = this.heldBase(version, adapter);
      if (held.tensors === null) throw new GrpoError('GRPO_ERR_ADAPTER_MISMATCH', `adapters v${version}: this worker holds no host copy of LoRA base v${held.version}`);
      this.setModelWeights(mergeNamedAdapters(shapes, held.tensors, tensors, adapter.r, adapter.alpha));
    }
    this.detachAdapters();
  }

  /**
   * LoRA, side path: the base goes into the model once, each version only assigns A and B
   * (milliseconds, no host copy of the base); every token then runs x W^T + s (x A^T) B^T.
   */
  private loadSide(version: number, tensors: NamedHostTensors, adapter: AdapterInfo): void {
    const shapes = llamaParamShapes(this.built!.config);
    const parts = adapter.base === version ? adapterPart(tensors) : tensors;
    const held = adapter.base === version ? null : this.heldBase(version, adapter);
    // built (and checked against the base's shapes) before anything is replaced
    const targets = namedAdapterTargets(shapes, parts, adapter.r);
    const same = this.adapters !== null && this.adapters.spec.r === adapter.r && this.adapters.spec.alpha === adapter.alpha && sameTargets(this.adapters, targets);
    const next = same ? null : LoraAdapters.fromNamedTensors(shapes, adapter.r, adapter.alpha, parts);
    if (held === null) {
      const base = this.checkedBase(version, tensors, adapter, false);
      this.setModelWeights(new Map([...tensors].filter(([n]) => !isAdapterName(n))));
      this.loraBase = base;
    }
    if (next === null) this.adapters!.setHostTensors(parts);
    else {
      this.detachAdapters();
      this.adapters = next;
    }
    this.model!.setAdapters(this.adapters, 'side');
  }

  /** The base part of a LoRA base payload, its fingerprint checked against the one it claims. */
  private checkedBase(version: number, tensors: NamedHostTensors, adapter: AdapterInfo, keepHost: boolean): LoraBase {
    const baseWeights: NamedHostTensors = new Map([...tensors].filter(([n]) => !isAdapterName(n)));
    const fingerprint = baseFingerprint(baseWeights);
    if (fingerprint !== adapter.baseFingerprint) {
      throw new GrpoError('GRPO_ERR_ADAPTER_MISMATCH', `LoRA base v${version} has fingerprint ${fingerprint}, its payload says ${adapter.baseFingerprint}`);
    }
    return { version, fingerprint, tensors: keepHost ? baseWeights : null };
  }

  /** The LoRA base an adapters-only payload needs, when this worker holds it. */
  private heldBase(version: number, adapter: AdapterInfo): LoraBase {
    const held = this.loraBase;
    if (held === null || held.version !== adapter.base || held.fingerprint !== adapter.baseFingerprint) {
      throw new GrpoError(
        'GRPO_ERR_ADAPTER_MISMATCH',
        `adapters v${version} are for LoRA base v${adapter.base} (${adapter.baseFingerprint}); this worker holds ${held === null ? 'no LoRA base' : `base v${held.version} (${held.fingerprint})`}`,
      );
    }
    return held;
  }

  /** Builds the model on the first load, else overwrites its weights in place. */
  private setModelWeights(weights: NamedHostTensors): void {
    if (this.model === null) this.model = LlamaModel.fromHostTensors(this.built!.config, weights, { trainable: false });
    else this.model.setWeights(weights);
  }

  private detachAdapters(): void {
    this.model?.setAdapters(null);
    this.adapters?.dispose();
    this.adapters = null;
  }

  /** Everything a rollout call needs, or null while the spec or the weights are missing. */
  context(): RolloutContext | null {
    if (this.spec === null || this.built === null || this.scoring === null || this.model === null || this.loaded === null) return null;
    return {
      model: this.model,
      tokenizer: this.built.tokenizer,
      task: this.scoring.task,
      taskFor: (options) => this.taskWith(options),
      pool: this.scoring.pool,
      sampling: this.spec.sampling,
      policyVersion: this.loaded,
      epoch: this.loadedEpoch,
    };
  }

  /** A one-line summary of the spec for logs. */
  describe(): Record<string, unknown> {
    const s = this.spec;
    if (s === null) return {};
    const c = this.built?.config;
    return {
      run: s.runId,
      task: s.task.name,
      taskSeed: s.task.seed,
      ...(c ? { vocab: c.vocab_size, hidden: c.hidden_size, layers: c.num_hidden_layers } : {}),
      ...(this.built ? { tokenizer: this.built.tokenizer.kind } : {}),
      sampling: s.sampling,
      rewardWeights: s.rewardWeights,
    };
  }

  /** Disposes the model and closes the reward pool. */
  async close(): Promise<void> {
    this.dropModel();
    await this.closeScoring();
    this.built = null;
    this.spec = null;
  }

  private dropModel(): void {
    this.detachAdapters();
    this.model?.dispose();
    this.model = null;
    this.loaded = null;
    this.loraBase = null;
  }

  /**
   * The run's task with `options` (a GroupSpec's taskOptions), loaded once per distinct options.
   * A failed load is forgotten, so a later group retries it.
   */
  private taskWith(options: Readonly<Record<string, unknown>>): Promise<Task> {
    const s = this.scoring;
    const spec = this.spec;
    if (s === null || spec === null) return Promise.reject(new GrpoError('GRPO_ERR_RUN_SPEC', 'no usable RunSpec is applied'));
    const key = JSON.stringify(options);
    let task = s.variants.get(key);
    if (task === undefined) {
      task = loadTask(spec.task.name, { seed: spec.task.seed, options: { ...options } });
      task.catch(() => s.variants.delete(key));
      if (s.variants.size >= MAX_TASK_VARIANTS) s.variants.delete(s.variants.keys().next().value as string);
      s.variants.set(key, task);
    }
    return task;
  }

  private async closeScoring(): Promise<void> {
    const s = this.scoring;
    this.scoring = null;
    await s?.pool.close();
  }

  private async buildScoring(spec: RunSpec): Promise<Scoring> {
    const taskSpec = { seed: spec.task.seed, options: spec.task.options };
    const task = await loadTask(spec.task.name, taskSpec); // main-thread copy for the grammar hook
    const pool = new RewardPool({
      task: spec.task.name,
      taskSeed: spec.task.seed,
      taskOptions: spec.task.options,
      rewardWeights: spec.rewardWeights,
      threads: this.opts.rewardThreads,
      timeoutMs: spec.rewards.timeoutMs,
      retries: spec.rewards.retries,
      rewardModule: spec.rewards.module ?? null,
      // the judge's bearer token comes from this worker's environment, never over the wire
      remote: spec.rewards.remote ? { ...spec.rewards.remote, token: process.env.GRPO_REMOTE_REWARD_TOKEN || null } : null,
      log: this.opts.log,
    });
    try {
      await pool.ready(); // a task the threads cannot load, or a weight naming no reward, fails here
    } catch (err) {
      await pool.close();
      throw err;
    }
    return { task, pool, variants: new Map() };
  }
}

/** The model config and tokenizer of a spec, checked against each other. */
async function buildModelParts(spec: RunSpec): Promise<Built> {
  const config = parseLlamaConfig(spec.model, 'RunSpec.model');
  const tokenizer = await loadTokenizer(spec.tokenizer, { ids: spec.specialTokens }); // the learner's ids, not names guessed
  if (tokenizer.vocabSize > config.vocab_size) {
    throw new GrpoError(
      'GRPO_ERR_RUN_SPEC',
      `RunSpec tokenizer has ${tokenizer.vocabSize} tokens but the model's vocab_size is ${config.vocab_size}; the learner must send a matching pair`,
    );
  }
  return { config, tokenizer };
}

/** The adapter tensors of a LoRA base payload. */
function adapterPart(tensors: NamedHostTensors): NamedHostTensors {
  return new Map([...tensors].filter(([n]) => isAdapterName(n)));
}

function sameTargets(adapters: LoraAdapters, targets: { weight: string }[]): boolean {
  return adapters.targets.length === targets.length && adapters.targets.every((t, i) => t.weight === targets[i]!.weight);
}
