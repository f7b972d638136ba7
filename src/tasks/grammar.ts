/**
 * Grammar-constrained generation: a user describes the valid completions as a deterministic state
 * machine, and grammarHook turns it into the sampler's allowed-token hook (SampleOptions.
 * allowedTokens, Task.grammar), so every sampled completion is a word of the machine's language.
 *
 * A machine works on characters (unit 'char', the default) or on token ids (unit 'token'):
 *
 *   start()          the state before the first symbol
 *   allowed(state)   the symbols that may come next: a Set, an array, a string of characters
 *                    (char machines), or null for "any symbol"
 *   step(state, s)   the state after symbol s; it must not modify `state` (states are shared:
 *                    the hook explores several continuations from one state)
 *   accepts(state)   optional: whether the completion may end here, i.e. whether EOS is allowed.
 *                    Without it every prefix may end.
 *
 * Char machines work with any tokenizer: a token is allowed when the machine can read every
 * character of the token's text in order. The hook walks a trie of the vocabulary's token texts
 * from the row's state, so a step costs the number of trie nodes the grammar leaves open, not the
 * vocabulary size. A token's text is its own decode (`tokenizer.decode([id])`), exact for the
 * character tokenizer and for tokenizers whose tokens decode independently; tokens that decode to
 * nothing (specials, partial UTF-8 bytes) are never allowed, EOS aside.
 *
 * Budget: the hook does not know max_gen_len. A grammar whose words can be longer than the
 * sampler's maxNewTokens yields truncated (finishReason 'length') samples; tasks give a bound in
 * Task.maxCompletionTokens, and a run should set max_gen_len to at least that.
 *
 * dfaMachine builds a char machine from a transition table, for regular languages.
 *
 * A task exposes its grammar as Task.grammar(tokenizer, prompts), usually
 *
 *   grammar: (tokenizer, prompts) => rowGrammarHook((row) => machineFor(prompts[row]), tokenizer)
 *
 * (or grammarHook(machine, tokenizer) when the grammar is the same for every prompt). Workers,
 * evals and SFT reach it through ./grammar-batch.ts.
 */
import { GrpoError } from '../shared/errors.js';
import type { Tokenizer } from '../model/types.js';
import type { GrammarHook } from './types.js';

export type CharSet = ReadonlySet<string> | readonly string[] | string;

export interface CharMachine<S> {
  readonly unit?: 'char';
  start(): S;
  allowed(state: S): CharSet | null;
  step(state: S, char: string): S;
  accepts?(state: S): boolean;
}

export interface TokenMachine<S> {
  readonly unit: 'token';
  start(): S;
  allowed(state: S): ReadonlySet<number> | readonly number[] | null;
  step(state: S, token: number): S;
  accepts?(state: S): boolean;
}

export type GrammarMachine<S> = CharMachine<S> | TokenMachine<S>;

interface TrieNode {
  children: Map<string, TrieNode>;
  ids: number[]; // tokens whose text ends here
}

interface Vocab {
  trie: TrieNode;
  texts: (string[] | null)[]; // id -> code points of its text (null = never allowed)
}

const vocabs = new WeakMap<Tokenizer, Vocab>();

/** The vocabulary's token texts as a trie, built once per tokenizer. */
function vocabOf(tokenizer: Tokenizer): Vocab {
  const cached = vocabs.get(tokenizer);
  if (cached) return cached;
  const trie: TrieNode = { children: new Map(), ids: [] };
  const texts: (string[] | null)[] = [];
  for (let id = 0; id < tokenizer.vocabSize; id++) {
    const text = id === tokenizer.eosId ? '' : tokenizer.decode([id]);
    const chars = text === '' ? null : [...text];
    texts.push(chars);
    if (chars === null) continue;
    let node = trie;
    for (const c of chars) {
      let next = node.children.get(c);
      if (!next) node.children.set(c, (next = { children: new Map(), ids: [] }));
      node = next;
    }
    node.ids.push(id);
  }
  const vocab = { trie, texts };
  vocabs.set(tokenizer, vocab);
  return vocab;
}

function toCharSet(set: CharSet): ReadonlySet<string> {
  if (typeof set === 'string') return new Set(set);
  return Array.isArray(set) ? new Set(set) : (set as ReadonlySet<string>);
}

function isAccepting<S>(machine: GrammarMachine<S>, state: S): boolean {
  return machine.accepts ? machine.accepts(state) : true;
}

/** Token ids whose whole text the char machine can read from `state` (trie walk). */
function charTokens<S>(machine: CharMachine<S>, node: TrieNode, state: S, out: number[]): void {
  const allowed = machine.allowed(state);
  const set = allowed === null ? null : toCharSet(allowed);
  const visit = (c: string, child: TrieNode): void => {
    for (const id of child.ids) out.push(id);
    if (child.children.size > 0) charTokens(machine, child, machine.step(state, c), out); // multi-character tokens
  };
  if (set === null || set.size >= node.children.size) {
    for (const [c, child] of node.children) if (set === null || set.has(c)) visit(c, child);
  } else {
    for (const c of set) {
      const child = node.children.get(c);
      if (child) visit(c, child);
    }
  }
}

function violation(detail: string): GrpoError {
  return new GrpoError(
    'GRPO_ERR_GRAMMAR_VIOLATION',
    `${detail}; the tokens were not generated under this grammar (sample with the grammar hook, and the same tokenizer)`,
  );
}

/** The machine's state after reading `tokens` (every token checked against the grammar). */
function replay<S>(machine: GrammarMachine<S>, vocab: Vocab, tokenizer: Tokenizer, state: S, tokens: readonly number[]): S {
  for (const t of tokens) {
    if (t === tokenizer.eosId) throw violation(`EOS (${t}) was followed by more tokens`);
    if (machine.unit === 'token') {
      const allowed = machine.allowed(state);
      if (allowed !== null && !(Array.isArray(allowed) ? allowed.includes(t) : (allowed as ReadonlySet<number>).has(t))) {
        throw violation(`token ${t} is not allowed here`);
      }
      state = machine.step(state, t);
      continue;
    }
    const chars = vocab.texts[t];
    if (chars === undefined || chars === null) throw violation(`token ${t} has no text a character grammar can read`);
    for (const c of chars) {
      const allowed = machine.allowed(state);
      if (allowed !== null && !toCharSet(allowed).has(c)) throw violation(`character ${JSON.stringify(c)} of token ${t} is not allowed here`);
      state = machine.step(state, c);
    }
  }
  return state;
}

/** Allowed next tokens from `state`, EOS included when the machine accepts; null = any token. */
function allowedTokens<S>(machine: GrammarMachine<S>, vocab: Vocab, tokenizer: Tokenizer, state: S): number[] | null {
  const accepting = isAccepting(machine, state);
  let ids: number[];
  if (machine.unit === 'token') {
    const allowed = machine.allowed(state);
    if (allowed === null) {
      if (accepting) return null;
      ids = [];
      for (let t = 0; t < tokenizer.vocabSize; t++) ids.push(t);
    } else {
      ids = [...allowed];
    }
    ids = ids.filter((t) => t !== tokenizer.eosId);
  } else {
    ids = [];
    charTokens(machine, vocab.trie, state, ids);
  }
  if (accepting) ids.push(tokenizer.eosId);
  return ids;
}

/**
 * The sampler hook of `machine` for `tokenizer`. Each row's state is kept between calls, so a
 * step reads only the newest token; a row whose tokens do not extend what the hook saw before
 * (a reused hook, a new batch) is replayed from the start.
 */
export function grammarHook<S>(machine: GrammarMachine<S>, tokenizer: Tokenizer): GrammarHook {
  return rowGrammarHook(() => machine, tokenizer);
}

/**
 * Like grammarHook, with a machine per sampler row (e.g. built from the row's prompt).
 * `machineFor(row)` is called once per row per hook.
 */
export function rowGrammarHook<S>(machineFor: (row: number) => GrammarMachine<S>, tokenizer: Tokenizer): GrammarHook {
  const vocab = vocabOf(tokenizer);
  const rows = new Map<number, { machine: GrammarMachine<S>; tokens: number[]; state: S }>();
  return (generated, rowIds) => {
    if (!Array.isArray(generated) || !Array.isArray(rowIds) || generated.length !== rowIds.length) {
      throw new GrpoError('GRPO_ERR_GRAMMAR_INPUT', `grammar hook got ${generated?.length} token lists for ${rowIds?.length} rows`);
    }
    return generated.map((tokens, s) => {
      const row = rowIds[s];
      let entry = rows.get(row);
      if (!entry) {
        const machine = machineFor(row);
        entry = { machine, tokens: [], state: machine.start() };
        rows.set(row, entry);
      }
      const extends_ = entry.tokens.length <= tokens.length && entry.tokens.every((t, i) => t === tokens[i]);
      const from = extends_ ? entry.tokens.length : 0;
      const base = extends_ ? entry.state : entry.machine.start();
      entry.state = replay(entry.machine, vocab, tokenizer, base, tokens.slice(from));
      entry.tokens = tokens.slice();
      return allowedTokens(entry.machine, vocab, tokenizer, entry.state);
    });
  };
}

/** The char machine's state after `text`, or null when the grammar does not allow `text`. */
export function runMachine<S>(machine: CharMachine<S>, text: string): S | null {
  let state = machine.start();
  for (const c of text) {
    const allowed = machine.allowed(state);
    if (allowed !== null && !toCharSet(allowed).has(c)) return null;
    state = machine.step(state, c);
  }
  return state;
}

/** True when `text` is a complete word of the char machine's language. */
export function machineAccepts<S>(machine: CharMachine<S>, text: string): boolean {
  const state = runMachine(machine, text);
  return state !== null && isAccepting(machine, state);
}

/**
 * A deterministic finite automaton over characters. `transitions[state]` maps a character class
 * to the next state; a class is a string of characters where `x-y` spans a range ("a-z0-9_";
 * a "-" first or last is literal). A character may appear in only one class of a state.
 */
export interface DfaSpec {
  start: string;
  accept: readonly string[];
  transitions: Readonly<Record<string, Readonly<Record<string, string>>>>;
}

function specError(message: string): GrpoError {
  return new GrpoError('GRPO_ERR_GRAMMAR_SPEC', message);
}

/** The characters of a class like "a-z_" (code points; ranges inclusive). */
export function expandCharClass(cls: string): string[] {
  const cps = [...cls];
  const out: string[] = [];
  for (let i = 0; i < cps.length; i++) {
    if (i + 2 < cps.length && cps[i + 1] === '-') {
      const lo = cps[i].codePointAt(0)!;
      const hi = cps[i + 2].codePointAt(0)!;
      if (hi < lo) throw specError(`character range ${cps[i]}-${cps[i + 2]} in class ${JSON.stringify(cls)} runs backwards`);
      if (hi - lo > 0xffff) throw specError(`character range ${cps[i]}-${cps[i + 2]} spans more than 65536 characters`);
      for (let cp = lo; cp <= hi; cp++) out.push(String.fromCodePoint(cp));
      i += 2;
    } else {
      out.push(cps[i]);
    }
  }
  return out;
}

/** A char machine for a DFA (see DfaSpec). States are the spec's state names. */
export function dfaMachine(spec: DfaSpec): CharMachine<string> {
  const table = new Map<string, Map<string, string>>();
  const states = new Set<string>([spec.start, ...spec.accept, ...Object.keys(spec.transitions)]);
  for (const [state, edges] of Object.entries(spec.transitions)) {
    const row = new Map<string, string>();
    for (const [cls, next] of Object.entries(edges)) {
      if (!states.has(next)) throw specError(`state ${JSON.stringify(state)} goes to ${JSON.stringify(next)}, which has no transitions and does not accept`);
      for (const c of expandCharClass(cls)) {
        const prev = row.get(c);
        if (prev !== undefined && prev !== next) {
          throw specError(`state ${JSON.stringify(state)} sends ${JSON.stringify(c)} to both ${JSON.stringify(prev)} and ${JSON.stringify(next)}; a DFA needs one`);
        }
        row.set(c, next);
      }
    }
    table.set(state, row);
  }
  const accept = new Set(spec.accept);
  const allowedChars = new Map([...table].map(([s, row]) => [s, new Set(row.keys())]));
  const none: ReadonlySet<string> = new Set();
  return {
    unit: 'char',
    start: () => spec.start,
    allowed: (state) => allowedChars.get(state) ?? none,
    step: (state, c) => {
      const next = table.get(state)?.get(c);
      if (next === undefined) throw violation(`character ${JSON.stringify(c)} has no transition from state ${JSON.stringify(state)}`);
      return next;
    },
    accepts: (state) => accept.has(state),
  };
}

/** A DFA for exactly `count` characters of `charClass` (e.g. the letters of a fill-in answer). */
export function fixedLengthMachine(charClass: string, count: number): CharMachine<string> {
  if (!Number.isInteger(count) || count < 0) throw specError(`fixed length is ${count}; it must be an integer >= 0`);
  const transitions: Record<string, Record<string, string>> = {};
  for (let i = 0; i < count; i++) transitions[String(i)] = { [charClass]: String(i + 1) };
  return dfaMachine({ start: '0', accept: [String(count)], transitions });
}
