/**
 * `grpo export`: a checkpoint as a plain Hugging Face model directory, for serving or sharing.
 *
 *   grpo export --checkpoint runs/grpo/checkpoint --merge --out exported/
 *     -> config.json, model.safetensors, tokenizer files: the base with the LoRA adapters merged
 *        in (W + alpha/r B A), or a full fine-tune's weights; no optimizer or trainer state
 *   grpo export --checkpoint runs/grpo/checkpoint --out adapter/
 *     -> a LoRA checkpoint's adapters alone in PEFT's format (adapter_config.json,
 *        adapter_model.safetensors) with config.json and the tokenizer, for PeftModel.from_pretrained
 *
 * Also takes an adapter directory PEFT wrote (adapter_config.json naming its base) with --merge.
 */
import { Command } from 'commander';
import { GrpoError } from '../shared/errors.js';
import { loadCheckpoint, saveCheckpoint } from '../model/checkpoint.js';
import { startEngine, type CommandIO } from './io.js';

export interface ExportOptions {
  checkpoint: string;
  out: string;
  merge: boolean;
}

export interface ExportResult {
  out: string;
  kind: 'merged' | 'adapters' | 'full';
  parameters: number; // values written
}

export async function exportCheckpoint(o: ExportOptions): Promise<ExportResult> {
  const ckpt = await loadCheckpoint(o.checkpoint);
  if (ckpt.adapters && !o.merge) {
    await saveCheckpoint(o.out, { config: ckpt.config, weights: new Map(), tokenizer: ckpt.tokenizer, adapters: { ...ckpt.adapters, baseWeights: undefined } });
    return { out: o.out, kind: 'adapters', parameters: count(ckpt.adapters.tensors) };
  }
  await saveCheckpoint(o.out, { config: ckpt.config, weights: ckpt.weights, tokenizer: ckpt.tokenizer });
  return { out: o.out, kind: ckpt.adapters ? 'merged' : 'full', parameters: count(ckpt.weights) };
}

function count(t: Map<string, { data: Float32Array }>): number {
  let n = 0;
  for (const v of t.values()) n += v.data.length;
  return n;
}

export function registerExport(program: Command, io: () => CommandIO): void {
  program
    .command('export')
    .description('write a checkpoint as a plain Hugging Face directory: LoRA adapters merged (--merge) or alone in PEFT format')
    .requiredOption('--checkpoint <dir>', 'a checkpoint directory (a LoRA one names its base in adapter_config.json)')
    .requiredOption('--out <dir>', 'where to write (a new or empty directory, or an earlier export)')
    .option('--merge', 'fold LoRA adapters into the base weights (W + alpha/r B A)', false)
    .option('--backend <name>', 'tensor engine for the merge', 'auto')
    .action(async (opts: { checkpoint: string; out: string; merge: boolean; backend: string }) => {
      const cio = io();
      if (opts.out === opts.checkpoint) throw new GrpoError('GRPO_ERR_USAGE', '--out must differ from --checkpoint');
      await startEngine(opts.backend as Parameters<typeof startEngine>[0], cio);
      const r = await exportCheckpoint({ checkpoint: opts.checkpoint, out: opts.out, merge: opts.merge });
      const what = r.kind === 'merged' ? 'base + LoRA adapters merged' : r.kind === 'adapters' ? 'LoRA adapters (PEFT format)' : 'weights';
      cio.out(`exported ${what} (${r.parameters} values) to ${r.out}`);
    });
}
