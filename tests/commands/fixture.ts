/** A small random-weight checkpoint with a trainer_state.json, for eval/score command tests. */
import { parseConfig } from '../../src/shared/config.js';
import { initEngine } from '../../src/engine/backend.js';
import { saveCheckpoint } from '../../src/model/checkpoint.js';
import { LlamaModel } from '../../src/model/llama.js';
import { createTask, tokenizerForTask } from '../../src/tasks/index.js';
import { tinyLlamaConfig } from '../helpers.js';

export async function writeTinyCheckpoint(dir: string, run: { seed: number; task_options: Record<string, unknown> }): Promise<void> {
  await initEngine({ backend: 'auto', log: () => {} }); // the commands under test use the same engine
  const task = createTask('arithmetic', { seed: run.seed, options: run.task_options });
  const tokenizer = tokenizerForTask(task);
  const config = tinyLlamaConfig(tokenizer, { initializer_range: 0.3 });
  const model = LlamaModel.create(config, 11);
  try {
    await saveCheckpoint(dir, {
      config,
      weights: await model.toHostTensors(),
      tokenizer,
      trainerState: { step: 0, policyVersion: 0, dataCursor: null, rng: null, config: parseConfig(run) },
    });
  } finally {
    model.dispose();
  }
}
