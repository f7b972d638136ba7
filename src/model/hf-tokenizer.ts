/**
 * Any Hugging Face tokenizer.json (BPE, WordPiece, Unigram, ...) through the maintained
 * `@huggingface/tokenizers` package (tokenizers.js); we never re-implement the algorithms.
 *
 * tokenizer.json alone does not say which tokens are bos/eos/pad: that lives in config.json
 * (ids) and tokenizer_config.json (token strings). Ids are resolved in this order: explicit ids
 * (the checkpoint loader passes config.json's), then tokenizer_config.json's token strings, then
 * well-known special token names among the added tokens.
 *
 * `encode` adds no special tokens (callers prepend bosId themselves when the model wants one);
 * `decode` drops special tokens and does not "clean up" spaces, so decode(encode(s)) gives s back
 * for tokenizers that can represent s.
 */
import { Tokenizer as HfJsTokenizerClass } from '@huggingface/tokenizers';
import { GrpoError } from '../shared/errors.js';
import type { Tokenizer } from './types.js';

/** The part of tokenizers.js we use (its bundled typings do not resolve under NodeNext). */
interface HfJsTokenizer {
  encode(text: string, opts: { add_special_tokens: boolean }): { ids: number[] };
  decode(ids: number[], opts: { skip_special_tokens: boolean; clean_up_tokenization_spaces: boolean }): string;
  get_vocab(withAddedTokens?: boolean): Map<string, number>;
  token_to_id(token: string): number | undefined;
}
const HfJsTokenizerCtor = HfJsTokenizerClass as unknown as new (json: object, config: object) => HfJsTokenizer;

export interface SpecialTokenIds {
  bosId?: number | null;
  eosId?: number | null;
  padId?: number | null;
  /** Tokens that end a completion besides the eos one (the checkpoint's other eos_token_id entries). */
  stopIds?: readonly number[] | null;
}

export interface HfTokenizerOptions {
  /** Contents of tokenizer_config.json, if the checkpoint has one. */
  tokenizerConfig?: Record<string, unknown>;
  /** Ids that override everything else (config.json's bos/eos/pad_token_id). */
  ids?: SpecialTokenIds;
}

const KNOWN_BOS = ['<s>', '<bos>', '<|begin_of_text|>', '<|startoftext|>', '<|im_start|>'];
const KNOWN_EOS = ['</s>', '<eos>', '<|end_of_text|>', '<|endoftext|>', '<|eot_id|>', '<|im_end|>'];
const KNOWN_PAD = ['<pad>', '[PAD]', '<|pad|>', '<|finetune_right_pad_id|>'];

export class HfTokenizer implements Tokenizer {
  readonly kind = 'hf' as const;
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number;
  readonly stopIds: readonly number[];
  readonly padId: number;
  readonly addsBos: boolean;
  /** The tokenizer_config.json it was built with ({} without one): its chat_template travels with checkpoints. */
  readonly tokenizerConfig: Readonly<Record<string, unknown>>;
  private readonly json: Record<string, unknown>;
  private readonly tok: HfJsTokenizer;

  private constructor(
    json: Record<string, unknown>,
    tok: HfJsTokenizer,
    ids: { bos: number | null; eos: number; stop: number[]; pad: number },
    vocabSize: number,
    tokenizerConfig: Record<string, unknown>,
  ) {
    this.json = json;
    this.tokenizerConfig = Object.freeze(structuredClone(tokenizerConfig));
    // transformers adds BOS only when tokenizer.json's post-processor does (a TemplateProcessing
    // with the BOS token); Qwen2's ByteLevel post-processor adds none though config.json names one
    this.addsBos = ids.bos !== null && tok.encode('a', { add_special_tokens: true }).ids[0] === ids.bos;
    this.tok = tok;
    this.vocabSize = vocabSize;
    this.bosId = ids.bos;
    this.eosId = ids.eos;
    this.stopIds = Object.freeze(ids.stop);
    this.padId = ids.pad;
  }

  /** Builds from tokenizer.json contents. Throws GRPO_ERR_BAD_TOKENIZER or GRPO_ERR_TOKENIZER_CONFIG. */
  static fromJSON(json: unknown, opts: HfTokenizerOptions = {}): HfTokenizer {
    if (json === null || typeof json !== 'object' || Array.isArray(json)) {
      throw new GrpoError('GRPO_ERR_BAD_TOKENIZER', 'tokenizer.json must hold a JSON object');
    }
    const copy = structuredClone(json) as Record<string, unknown>;
    let tok: HfJsTokenizer;
    try {
      // tokenizers.js keeps references into the object it is given, so hand it its own copy
      tok = new HfJsTokenizerCtor(structuredClone(copy), opts.tokenizerConfig ?? {});
    } catch (err) {
      throw new GrpoError('GRPO_ERR_BAD_TOKENIZER', `tokenizers.js cannot open this tokenizer.json: ${(err as Error).message}`, {
        cause: err,
      });
    }
    let maxId = -1;
    for (const id of tok.get_vocab(true).values()) maxId = Math.max(maxId, id);
    const vocabSize = maxId + 1;
    const ids = resolveSpecialIds(tok, copy, opts, vocabSize);
    return new HfTokenizer(copy, tok, ids, vocabSize, opts.tokenizerConfig ?? {});
  }

  encode(text: string): number[] {
    return [...this.tok.encode(text, { add_special_tokens: false }).ids];
  }

  decode(ids: number[]): string {
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
        throw new GrpoError('GRPO_ERR_TOKEN_OUT_OF_RANGE', `token id ${id} is outside the tokenizer's vocabulary [0, ${this.vocabSize})`);
      }
    }
    if (ids.length === 0) return ''; // tokenizers.js rejects an empty list
    return this.tok.decode(ids, { skip_special_tokens: true, clean_up_tokenization_spaces: false });
  }

  /** The tokenizer.json this was built from (a copy). */
  toJSON(): unknown {
    return structuredClone(this.json);
  }
}

function addedTokens(json: Record<string, unknown>): { id: number; content: string; special: boolean }[] {
  const raw = Array.isArray(json.added_tokens) ? json.added_tokens : [];
  return raw.filter(
    (t): t is { id: number; content: string; special: boolean } =>
      t !== null && typeof t === 'object' && Number.isInteger(t.id) && typeof t.content === 'string',
  );
}

/** tokenizer_config.json writes a special token as "text" or {"content": "text", ...}. */
function configTokenText(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (v !== null && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') {
    return (v as { content: string }).content;
  }
  return null;
}

function resolveSpecialIds(
  tok: HfJsTokenizer,
  json: Record<string, unknown>,
  opts: HfTokenizerOptions,
  vocabSize: number,
): { bos: number | null; eos: number; stop: number[]; pad: number } {
  const specials = addedTokens(json).filter((t) => t.special);
  const resolve = (explicit: number | null | undefined, configKey: string, known: string[]): number | null => {
    if (explicit !== undefined && explicit !== null) return explicit;
    const text = configTokenText(opts.tokenizerConfig?.[configKey]);
    if (text !== null) {
      const id = tok.token_to_id(text);
      if (id === undefined) {
        throw new GrpoError('GRPO_ERR_TOKENIZER_CONFIG', `tokenizer_config.json ${configKey} ${JSON.stringify(text)} is not in the vocabulary`);
      }
      return id;
    }
    for (const name of known) {
      const hit = specials.find((t) => t.content === name);
      if (hit) return hit.id;
    }
    return null;
  };
  const eos = resolve(opts.ids?.eosId, 'eos_token', KNOWN_EOS);
  if (eos === null) {
    throw new GrpoError(
      'GRPO_ERR_TOKENIZER_CONFIG',
      'cannot tell the end-of-sequence token: set eos_token_id in config.json or eos_token in tokenizer_config.json',
    );
  }
  const bos = resolve(opts.ids?.bosId, 'bos_token', KNOWN_BOS);
  const pad = resolve(opts.ids?.padId, 'pad_token', KNOWN_PAD) ?? eos; // many Llama tokenizers have no pad
  const stop = [...new Set([eos, ...(opts.ids?.stopIds ?? [])])];
  const named: [string, number | null][] = [['bos', bos], ['eos', eos], ['pad', pad], ...stop.map((id): [string, number] => ['stop', id])];
  for (const [name, id] of named) {
    if (id !== null && (!Number.isInteger(id) || id < 0 || id >= vocabSize)) {
      throw new GrpoError('GRPO_ERR_TOKENIZER_CONFIG', `${name} token id ${id} is outside the tokenizer's vocabulary [0, ${vocabSize})`);
    }
  }
  return { bos, eos, stop, pad };
}
