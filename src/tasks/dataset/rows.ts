/**
 * From file records to training rows: the prompt (text, or a TRL conversational `messages`
 * list), the reference answer and the SFT completion, picked by dotted field paths.
 *
 *   prompt_field      "question", "data.prompt", "turns.0.text" (a number indexes a list). A value
 *                     that is a list of {role, content} is a conversation (TRL's conversational
 *                     format). Unset: the first of prompt, question, problem, messages, input
 *                     that the first record has.
 *   messages          a conversation whose last message is the assistant's: that message is the
 *                     completion and the messages before it the prompt (TRL's `messages` format)
 *   answer_field      unset: the first of answer, solution, ground_truth, target present
 *   completion_field  unset: the first of completion, response present; a list of messages gives
 *                     the contents of its assistant messages
 *
 * A record missing a field the run needs is an error naming the file, the line and the field
 * (GRPO_ERR_DATASET_FIELD); nothing is skipped silently.
 */
import { GrpoError } from '../../shared/errors.js';
import type { ChatMessage } from '../../model/chat-template.js';
import type { DatasetRecord } from './read.js';

export interface DatasetRow {
  /** Plain text, or a conversation to render with the chat template. */
  prompt: string | ChatMessage[];
  answer: string | null;
  completion: string | null;
  /** "data/train.jsonl line 12": for messages. */
  where: string;
}

export interface FieldSpec {
  prompt: string | null; // dotted path; null = first of PROMPT_FIELDS present
  answer: string | null;
  completion: string | null;
  needAnswer: boolean; // the task scores against a reference answer
  needCompletion: boolean; // SFT
}

export interface ResolvedFields {
  prompt: string;
  answer: string | null;
  completion: string | null;
}

export const PROMPT_FIELDS = ['prompt', 'question', 'problem', 'messages', 'input'] as const;
export const ANSWER_FIELDS = ['answer', 'solution', 'ground_truth', 'target'] as const;
export const COMPLETION_FIELDS = ['completion', 'response'] as const;

const MISSING = Symbol('missing');

/** The value at a dotted path ("a.b.0.c"); MISSING when any step is absent. */
export function getPath(value: unknown, path: string): unknown {
  let cur: unknown = value;
  for (const key of path.split('.')) {
    if (Array.isArray(cur) && /^\d+$/.test(key)) cur = Number(key) < cur.length ? cur[Number(key)] : MISSING;
    else if (cur !== null && typeof cur === 'object' && !Array.isArray(cur) && Object.hasOwn(cur, key)) cur = (cur as Record<string, unknown>)[key];
    else return MISSING;
    if (cur === MISSING) return MISSING;
  }
  return cur;
}

function fieldError(where: string, msg: string): GrpoError {
  return new GrpoError('GRPO_ERR_DATASET_FIELD', `${where}: ${msg}`);
}

function keysOf(v: unknown): string {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? Object.keys(v).join(', ') || '(none)' : '(not an object)';
}

/** The first candidate present in `record`, or null. */
function firstPresent(record: Record<string, unknown>, candidates: readonly string[]): string | null {
  return candidates.find((f) => getPath(record, f) !== MISSING) ?? null;
}

/** Field names for the whole file, from the spec or (unset ones) from the first record. */
export function resolveFields(spec: FieldSpec, first: DatasetRecord, file: string): ResolvedFields {
  const prompt = spec.prompt ?? firstPresent(first.value, PROMPT_FIELDS);
  if (prompt === null) {
    throw fieldError(`${file} ${first.where}`, `no prompt field: the record has keys ${keysOf(first.value)}; set prompt_field (a dotted path), or name one of ${PROMPT_FIELDS.join(', ')}`);
  }
  const answer = spec.answer ?? firstPresent(first.value, ANSWER_FIELDS);
  if (answer === null && spec.needAnswer) {
    throw fieldError(`${file} ${first.where}`, `no answer field: the record has keys ${keysOf(first.value)}; set answer_field (a dotted path), or name one of ${ANSWER_FIELDS.join(', ')}`);
  }
  const completion = spec.completion ?? firstPresent(first.value, COMPLETION_FIELDS);
  return { prompt, answer, completion };
}

function asMessages(v: unknown, where: string, field: string): ChatMessage[] | null {
  if (!Array.isArray(v)) return null;
  return v.map((m, i) => {
    const role = (m as { role?: unknown } | null)?.role;
    const content = (m as { content?: unknown } | null)?.content;
    if (typeof role !== 'string' || typeof content !== 'string') {
      throw fieldError(where, `field ${field}.${i} must be a message { "role": string, "content": string }, got ${JSON.stringify(m)?.slice(0, 120)}`);
    }
    return { role, content };
  });
}

/** A field's text: strings as they are, numbers and booleans as JSON, assistant messages joined. */
function asText(v: unknown, where: string, field: string): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  const msgs = asMessages(v, where, field);
  if (msgs !== null) return msgs.filter((m) => m.role === 'assistant').map((m) => m.content).join('\n');
  throw fieldError(where, `field ${field} must be text or a number, got ${JSON.stringify(v)?.slice(0, 120)}`);
}

function required(record: DatasetRecord, where: string, field: string): unknown {
  const v = getPath(record.value, field);
  if (v === MISSING || v === null) {
    throw fieldError(where, `field ${JSON.stringify(field)} is ${v === null ? 'null' : 'missing'} (the record has keys ${keysOf(record.value)})`);
  }
  return v;
}

/** One record as a row. `needCompletion`: a completion must be found (SFT). */
export function toRow(record: DatasetRecord, file: string, fields: ResolvedFields, spec: Pick<FieldSpec, 'needCompletion'>): DatasetRow {
  const where = `${file} ${record.where}`;
  const rawPrompt = required(record, where, fields.prompt);
  let prompt: string | ChatMessage[];
  let completion: string | null = null;
  const msgs = asMessages(rawPrompt, where, fields.prompt);
  if (msgs !== null) {
    if (msgs.length === 0) throw fieldError(where, `field ${fields.prompt} is an empty conversation`);
    // TRL's `messages` format: the last assistant turn is the completion, the turns before it the prompt
    if (msgs[msgs.length - 1].role === 'assistant' && fields.completion === null) {
      completion = msgs[msgs.length - 1].content;
      prompt = msgs.slice(0, -1);
      if (prompt.length === 0) throw fieldError(where, `field ${fields.prompt} holds only an assistant message; there is no prompt`);
    } else {
      prompt = msgs;
    }
  } else if (typeof rawPrompt === 'string') {
    prompt = rawPrompt;
  } else {
    throw fieldError(where, `field ${fields.prompt} must be text or a list of messages, got ${JSON.stringify(rawPrompt)?.slice(0, 120)}`);
  }
  const answer = fields.answer === null ? null : asText(required(record, where, fields.answer), where, fields.answer);
  if (fields.completion !== null) completion = asText(required(record, where, fields.completion), where, fields.completion);
  if (spec.needCompletion && completion === null) {
    throw fieldError(where, `no completion: set completion_field (a dotted path), name a field ${COMPLETION_FIELDS.join(' or ')}, or end a messages list with the assistant's turn`);
  }
  return { prompt, answer, completion, where };
}
