#!/usr/bin/env node
// Writes examples/data/math-sample.jsonl: grade-school word problems in GSM8K's shape
// ({"question", "answer": "...\n#### 42"}) from the math-answer task's template generator, so
// the pretrained-model example runs with no download. Run after `npm run build`:
//   node tools/make-math-sample.mjs
// tests/tasks/math-answer/math-answer.test.ts checks that the committed file is this output.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Rng } from '../dist/shared/rng.js';
import { MATH_SAMPLE, mathSampleLines } from '../dist/tasks/math-answer/word-problems.js';

const out = join(dirname(fileURLToPath(import.meta.url)), '..', 'examples', 'data', 'math-sample.jsonl');
mkdirSync(dirname(out), { recursive: true });
const lines = mathSampleLines(new Rng(MATH_SAMPLE.seed), MATH_SAMPLE.rows);
writeFileSync(out, lines.join('\n') + '\n');
console.log(`wrote ${lines.length} problems to ${out}`);
