/**
 * The learner's policy under LoRA (config lora_r > 0): the base checkpoint's weights loaded
 * frozen, adapters attached (fresh, or a resumed checkpoint's), so the trainer updates only the
 * adapters and the frozen base is its KL reference (train-step.ts). Checkpoints then hold the
 * adapters in PEFT's format with `base_model_name_or_path` pointing at the base (model/peft.ts).
 */
import { resolve } from 'node:path';
import type { Config } from '../shared/config.js';
import type { AdapterInfo } from '../shared/protocol.js';
import type { NamedHostTensors } from '../model/types.js';
import { GrpoError } from '../shared/errors.js';
import type { Checkpoint, CheckpointAdapters } from '../model/checkpoint.js';
import { LlamaModel } from '../model/llama.js';
import { llamaParamShapes } from '../model/llama-params.js';
import { baseFingerprint, LoraAdapters, loraTargets, type LoraSpec } from '../model/lora.js';
import { loraSpecOf } from '../model/peft.js';

export interface LoraPolicy {
  policy: LlamaModel;
  adapters: LoraAdapters; // attached to policy; dispose after it
  basePath: string; // absolute path of the base checkpoint
  baseFingerprint: string; // of the base weights (model/lora.ts), carried with every adapter payload
  publishedBase: number | null; // the version the LoRA base went out with; null: send it with the next publish
}

/**
 * A fresh LoRA policy on `base` (loaded from `basePath`), or, with `resumed`, the adapters a
 * LoRA checkpoint holds on the base it names. Null when the config has lora_r 0.
 */
export function loraPolicy(config: Config, base: Checkpoint, basePath: string, resumed?: CheckpointAdapters): LoraPolicy | null {
  const spec = loraSpecOf(config);
  if (spec === null) {
    if (resumed) throw new GrpoError('GRPO_ERR_RESUME', 'the checkpoint holds LoRA adapters but lora_r is 0; resume with the run\'s LoRA settings');
    return null;
  }
  const shapes = llamaParamShapes(base.config);
  if (resumed) {
    // compare the layers adapted, not the spelling (all-linear is saved as the list of names)
    const layers = (s: LoraSpec): string => loraTargets(shapes, s).map((t) => t.module).join(',');
    if (resumed.spec.r !== spec.r || resumed.spec.alpha !== spec.alpha || layers(resumed.spec) !== layers(spec)) {
      throw new GrpoError('GRPO_ERR_RESUME', `the checkpoint's adapters (r ${resumed.spec.r}, alpha ${resumed.spec.alpha}, ${JSON.stringify(resumed.spec.targetModules)}) differ from this run's LoRA settings`);
    }
  }
  const weights = resumed?.baseWeights ?? base.weights;
  const adapters = resumed ? LoraAdapters.fromHostTensors(shapes, spec, resumed.tensors) : LoraAdapters.create(shapes, spec, config.seed);
  const policy = LlamaModel.fromHostTensors(base.config, weights, { trainable: false });
  policy.setAdapters(adapters);
  return { policy, adapters, basePath: resolve(resumed ? resumed.basePath : basePath), baseFingerprint: baseFingerprint(weights), publishedBase: null };
}

/**
 * The weights payload of policy version `version` under LoRA (protocol.ts AdapterInfo): the first
 * one (and the first after the coordinator lost it) is the LoRA base, the frozen weights plus the
 * adapters; every later one is the adapters alone, a few MB however large the base.
 */
export async function loraPayload(lora: LoraPolicy, policy: LlamaModel, version: number): Promise<{ tensors: NamedHostTensors; adapter: AdapterInfo }> {
  const adapters = await lora.adapters.toHostTensors();
  const spec = lora.adapters.spec;
  if (lora.publishedBase === null) {
    lora.publishedBase = version;
    const tensors: NamedHostTensors = new Map([...(await policy.toHostTensors()), ...adapters]);
    return { tensors, adapter: { base: version, baseFingerprint: lora.baseFingerprint, r: spec.r, alpha: spec.alpha } };
  }
  return { tensors: adapters, adapter: { base: lora.publishedBase, baseFingerprint: lora.baseFingerprint, r: spec.r, alpha: spec.alpha } };
}

/** The checkpoint's adapters part for saveCheckpoint. */
export async function checkpointAdapters(lora: LoraPolicy): Promise<CheckpointAdapters> {
  return { spec: lora.adapters.spec, basePath: lora.basePath, tensors: await lora.adapters.toHostTensors() };
}
