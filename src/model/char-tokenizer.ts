/**
 * Character-level tokenizer for the built-in tasks: one token per Unicode code point of a fixed
 * alphabet, plus special tokens (<pad>, <bos>, <eos> by default) at the lowest ids.
 *
 * It serialises to a Hugging Face tokenizer.json that the `tokenizers` library (Rust/Python) and
 * tokenizers.js open unchanged: a WordLevel model whose vocab holds the specials and the
 * characters, a Split pre-tokenizer isolating every code point, a Fuse decoder that joins the
 * pieces without spaces, and the specials declared as added tokens. `fromJSON` recognises that
 * exact structure, so a checkpoint's tokenizer.json round-trips back to a CharTokenizer.
 *
 * Differences from running the JSON through a Hugging Face tokenizer, on purpose: `encode` reads
 * text as plain characters (the string "<eos>" in a prompt is five characters, never a control
 * token), and `decode` drops special tokens.
 */
import { GrpoError } from '../shared/errors.js';
import type { Tokenizer } from './types.js';

/** Matches any single code point (with the `u` flag); Oniguruma and JavaScript agree on it. */
export const CHAR_SPLIT_REGEX = '[\\s\\S]';
export const DEFAULT_SPECIALS: readonly string[] = ['<pad>', '<bos>', '<eos>'];
const UNK = '<unk>';
const BOS_NAMES = ['<bos>', '<s>'];
const EOS_NAMES = ['<eos>', '</s>'];
const PAD_NAMES = ['<pad>'];

function configError(message: string): GrpoError {
  return new GrpoError('GRPO_ERR_TOKENIZER_CONFIG', message);
}

export class CharTokenizer implements Tokenizer {
  readonly kind = 'char' as const;
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number;
  readonly stopIds: readonly number[];
  readonly padId: number;
  /** Id of "<unk>" when it is among the specials: unknown characters map to it instead of failing. */
  readonly unkId: number | null;
  private readonly tokens: readonly string[]; // id -> token text
  private readonly charIds: Map<string, number>; // character -> id (specials excluded)
  private readonly specialCount: number;

  private constructor(specials: readonly string[], chars: readonly string[]) {
    this.tokens = [...specials, ...chars];
    this.specialCount = specials.length;
    this.vocabSize = this.tokens.length;
    this.charIds = new Map(chars.map((c, i) => [c, specials.length + i]));
    const find = (names: string[]): number | null => {
      const i = specials.findIndex((s) => names.includes(s));
      return i < 0 ? null : i;
    };
    const eos = find(EOS_NAMES);
    if (eos === null) throw configError(`specials [${specials.join(', ')}] name no end-of-sequence token; add "<eos>"`);
    this.eosId = eos;
    this.stopIds = [eos];
    this.bosId = find(BOS_NAMES);
    this.padId = find(PAD_NAMES) ?? eos; // without a pad token, padding reuses eos (masked anyway)
    this.unkId = find([UNK]);
  }

  /**
   * A tokenizer whose ids are: the specials in the given order (default <pad>=0, <bos>=1,
   * <eos>=2), then each code point of `chars` in order. The alphabet must not repeat a character.
   */
  static fromAlphabet(chars: string, opts: { specials?: string[] } = {}): CharTokenizer {
    const specials = opts.specials ?? [...DEFAULT_SPECIALS];
    const alphabet = [...chars];
    if (alphabet.length === 0) throw configError('alphabet is empty; give at least one character');
    const seen = new Set<string>();
    for (const c of alphabet) {
      if (seen.has(c)) throw configError(`alphabet repeats the character ${JSON.stringify(c)}; list each character once`);
      seen.add(c);
    }
    const seenSpecial = new Set<string>();
    for (const s of specials) {
      if ([...s].length < 2) throw configError(`special token ${JSON.stringify(s)} must be at least two characters, like "<eos>"`);
      if (seenSpecial.has(s)) throw configError(`special token ${JSON.stringify(s)} is listed twice`);
      seenSpecial.add(s);
    }
    return new CharTokenizer(specials, alphabet);
  }

  /** True when `json` has the exact structure toJSON writes (the marker is the structure itself). */
  static isCharTokenizerJSON(json: unknown): boolean {
    return parseCharJSON(json) !== null;
  }

  /** Rebuilds a CharTokenizer from its tokenizer.json. Throws GRPO_ERR_TOKENIZER_CONFIG otherwise. */
  static fromJSON(json: unknown): CharTokenizer {
    const parsed = parseCharJSON(json);
    if (parsed === null) {
      throw configError('tokenizer.json is not a character tokenizer (WordLevel + per-character Split + Fuse decoder)');
    }
    return new CharTokenizer(parsed.specials, parsed.chars);
  }

  /** Code points to ids. An unknown character maps to <unk> if there is one, else throws. */
  encode(text: string): number[] {
    const ids: number[] = [];
    for (const c of text) {
      const id = this.charIds.get(c) ?? this.unkId;
      if (id === null) {
        throw new GrpoError(
          'GRPO_ERR_TOKENIZER_UNKNOWN_CHAR',
          `character ${JSON.stringify(c)} (U+${c.codePointAt(0)!.toString(16).toUpperCase()}) is not in the ` +
            `tokenizer's alphabet of ${this.charIds.size} characters; add it to the alphabet or an "<unk>" special`,
        );
      }
      ids.push(id);
    }
    return ids;
  }

  /** Ids to text; special tokens (pad, bos, eos, ...) are dropped. */
  decode(ids: number[]): string {
    let out = '';
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
        throw new GrpoError('GRPO_ERR_TOKEN_OUT_OF_RANGE', `token id ${id} is outside the tokenizer's vocabulary [0, ${this.vocabSize})`);
      }
      if (id >= this.specialCount) out += this.tokens[id];
    }
    return out;
  }

  /** The Hugging Face tokenizer.json (see the file comment for the structure). */
  toJSON(): unknown {
    const vocab: Record<string, number> = {};
    this.tokens.forEach((t, id) => (vocab[t] = id));
    return {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: this.tokens.slice(0, this.specialCount).map((content, id) => ({
        id,
        content,
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
        special: true,
      })),
      normalizer: null,
      pre_tokenizer: { type: 'Split', pattern: { Regex: CHAR_SPLIT_REGEX }, behavior: 'Isolated', invert: false },
      post_processor: null,
      decoder: { type: 'Fuse' },
      model: { type: 'WordLevel', vocab, unk_token: UNK },
    };
  }
}

function isObject(x: unknown): x is Record<string, unknown> {
  return x !== null && typeof x === 'object' && !Array.isArray(x);
}

/** The specials and characters of a char tokenizer.json, or null if `json` is anything else. */
function parseCharJSON(json: unknown): { specials: string[]; chars: string[] } | null {
  if (!isObject(json)) return null;
  const { model, pre_tokenizer: pre, decoder, normalizer, post_processor: post, added_tokens: added } = json;
  if (!isObject(model) || model.type !== 'WordLevel' || !isObject(model.vocab)) return null;
  if (!isObject(pre) || pre.type !== 'Split' || pre.behavior !== 'Isolated' || pre.invert !== false) return null;
  if (!isObject(pre.pattern) || pre.pattern.Regex !== CHAR_SPLIT_REGEX) return null;
  if (!isObject(decoder) || decoder.type !== 'Fuse') return null;
  if (normalizer != null || post != null || !Array.isArray(added)) return null;

  // ids must be exactly 0..n-1: specials (the added tokens, in id order) first, then characters
  const byId: string[] = [];
  for (const [token, id] of Object.entries(model.vocab)) {
    if (!Number.isInteger(id) || (id as number) < 0 || byId[id as number] !== undefined) return null;
    byId[id as number] = token;
  }
  const n = Object.keys(model.vocab).length;
  if (byId.length !== n) return null;
  const specials: string[] = [];
  for (const [i, a] of added.entries()) {
    if (!isObject(a) || a.id !== i || a.special !== true || byId[i] !== a.content) return null;
    specials.push(a.content as string);
  }
  const chars = byId.slice(specials.length);
  if (chars.length === 0 || !chars.every((c) => [...c].length === 1)) return null;
  return { specials, chars };
}
