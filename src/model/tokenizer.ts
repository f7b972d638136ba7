/**
 * Loading tokenizers from tokenizer.json: our character tokenizer when the JSON has its exact
 * structure (see char-tokenizer.ts), else any Hugging Face tokenizer through tokenizers.js.
 */
import { readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { GrpoError } from '../shared/errors.js';
import { CharTokenizer } from './char-tokenizer.js';
import { HfTokenizer, type HfTokenizerOptions } from './hf-tokenizer.js';
import type { Tokenizer } from './types.js';

export { CharTokenizer, DEFAULT_SPECIALS } from './char-tokenizer.js';
export { HfTokenizer, type HfTokenizerOptions, type SpecialTokenIds } from './hf-tokenizer.js';

/**
 * `jsonOrPath` is tokenizer.json's parsed contents, a path to it, or a directory holding it.
 * With a path, a tokenizer_config.json beside it is read too (unless opts gives one), since it
 * names the bos/eos/pad tokens. Throws GRPO_ERR_TOKENIZER_NOT_FOUND or GRPO_ERR_BAD_TOKENIZER.
 */
export async function loadTokenizer(jsonOrPath: unknown | string, opts: HfTokenizerOptions = {}): Promise<Tokenizer> {
  let json = jsonOrPath;
  let tokenizerConfig = opts.tokenizerConfig;
  if (typeof jsonOrPath === 'string') {
    const isDir = await stat(jsonOrPath).then(
      (s) => s.isDirectory(),
      (err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') {
          throw new GrpoError('GRPO_ERR_TOKENIZER_NOT_FOUND', `no tokenizer at ${jsonOrPath}`, { cause: err });
        }
        throw new GrpoError('GRPO_ERR_BAD_TOKENIZER', `cannot read ${jsonOrPath}: ${err.message}`, { cause: err });
      },
    );
    const file = isDir ? join(jsonOrPath, 'tokenizer.json') : jsonOrPath;
    json = await readJsonFile(file, 'GRPO_ERR_TOKENIZER_NOT_FOUND');
    if (tokenizerConfig === undefined) {
      const cfg = await readJsonFile(join(dirname(file), 'tokenizer_config.json'), null);
      if (cfg !== null && typeof cfg === 'object' && !Array.isArray(cfg)) tokenizerConfig = cfg as Record<string, unknown>;
    }
  }
  if (CharTokenizer.isCharTokenizerJSON(json)) return CharTokenizer.fromJSON(json);
  return HfTokenizer.fromJSON(json, { ...opts, tokenizerConfig });
}

/**
 * Parses a JSON file. A missing file throws `missingCode`, or returns null when that is null
 * (optional files); unreadable or invalid JSON throws GRPO_ERR_BAD_TOKENIZER.
 */
async function readJsonFile(file: string, missingCode: 'GRPO_ERR_TOKENIZER_NOT_FOUND' | null): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT' && missingCode === null) return null;
    if (e.code === 'ENOENT') throw new GrpoError(missingCode!, `no tokenizer file at ${file}`, { cause: err });
    throw new GrpoError('GRPO_ERR_BAD_TOKENIZER', `cannot read ${file}: ${e.message}`, { cause: err });
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new GrpoError('GRPO_ERR_BAD_TOKENIZER', `${file} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
}
