// Writes a LoRA checkpoint of ours on tests/fixtures/hf-tiny-llama (random non-zero B on every
// linear layer), its merged export, and our logits of both on fixed ids, into DIR, for
// tools/peft/check_peft.py to open with the real `peft` and `transformers`:
//   npx tsc -p . && node tools/peft/make-adapter.mjs DIR
import { cpSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { initEngine } from '../../dist/engine/backend.js';
import { tf } from '../../dist/engine/tf.js';
import { exportCheckpoint } from '../../dist/commands/export.js';
import { loadCheckpoint, saveCheckpoint } from '../../dist/model/checkpoint.js';
import { LlamaModel } from '../../dist/model/llama.js';
import { llamaParamShapes } from '../../dist/model/llama-params.js';
import { LoraAdapters } from '../../dist/model/lora.js';

const dir = resolve(process.argv[2] ?? '.peftcheck');
mkdirSync(dir, { recursive: true });
await initEngine({ backend: 'cpu', log: () => {} });
cpSync('tests/fixtures/hf-tiny-llama', join(dir, 'base'), { recursive: true });
const base = await loadCheckpoint(join(dir, 'base'));
const spec = { r: 4, alpha: 8, dropout: 0, targetModules: 'all-linear' };
const adapters = LoraAdapters.create(llamaParamShapes(base.config), spec, 11);
const host = await adapters.toHostTensors();
for (const [name, t] of host) if (name.includes('lora_B')) t.data.forEach((_, i) => (t.data[i] = Math.sin(3 * i + name.length) * 0.05));
adapters.setHostTensors(host);
// base_model_name_or_path relative to the adapter directory, so the folder can travel
await saveCheckpoint(join(dir, 'adapter'), { config: base.config, weights: new Map(), tokenizer: base.tokenizer, adapters: { spec, basePath: '../base', tensors: host } });
await exportCheckpoint({ checkpoint: join(dir, 'adapter'), out: join(dir, 'merged'), merge: true });
const ids = [[1, 5, 9, 14, 20, 33, 41, 7]];
const model = LlamaModel.fromHostTensors(base.config, base.weights, { trainable: false });
model.setAdapters(adapters);
const logits = tf.tidy(() => model.logits(tf.tensor2d(ids, undefined, 'int32')).arraySync());
writeFileSync(join(dir, 'ours.json'), JSON.stringify({ ids, logits }));
console.log(`wrote ${dir}: base/, adapter/ (PEFT), merged/, ours.json`);
