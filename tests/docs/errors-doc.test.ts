/**
 * docs/errors.md and the source cannot drift apart: every `GRPO_ERR_...` code used under src/ has
 * an entry (a heading or the first cell of a table row) in the doc, and every code the doc
 * mentions anywhere is still used somewhere under src/.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DOC = join(ROOT, 'docs', 'errors.md');

const CODE = /GRPO_ERR_[A-Z0-9_]+/g;
/** Written in prose and comments as "some code", never thrown: `error GRPO_ERR_X: message`. */
const PLACEHOLDERS = new Set(['GRPO_ERR_X']);

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return tsFiles(p);
    return e.isFile() && e.name.endsWith('.ts') ? [p] : [];
  });
}

/**
 * Codes named in `text`. A match ending in `_` is a prefix in prose (`GRPO_ERR_REWARD_*`), and
 * the ErrorCode template type (`GRPO_ERR_${...}`) never matches, since `$` is not in the class.
 */
function codesIn(text: string): Set<string> {
  const out = new Set<string>();
  for (const m of text.matchAll(CODE)) {
    if (!PLACEHOLDERS.has(m[0]) && !m[0].endsWith('_')) out.add(m[0]);
  }
  return out;
}

/** Codes the source uses, each with the first file that uses it (for the failure message). */
function sourceCodes(): Map<string, string> {
  const where = new Map<string, string>();
  for (const file of tsFiles(join(ROOT, 'src'))) {
    for (const code of codesIn(readFileSync(file, 'utf8'))) {
      if (!where.has(code)) where.set(code, file.slice(ROOT.length));
    }
  }
  return where;
}

/** Entries: a heading that is just the code, or a table row whose first cell is just the code. */
function docEntries(markdown: string): string[] {
  const entries: string[] = [];
  const bare = (s: string): string => s.trim().replace(/^`(.*)`$/, '$1');
  for (const line of markdown.split('\n')) {
    const heading = /^#{1,6}\s+(.*)$/.exec(line);
    const cell = /^\|([^|]*)\|/.exec(line);
    const text = heading ? bare(heading[1]) : cell ? bare(cell[1]) : null;
    if (text !== null && /^GRPO_ERR_[A-Z0-9_]+$/.test(text)) entries.push(text);
  }
  return entries;
}

describe('docs/errors.md', () => {
  const markdown = readFileSync(DOC, 'utf8');
  const used = sourceCodes();
  const entries = docEntries(markdown);

  it('finds the codes it checks (the scan is not vacuous)', () => {
    expect(used.size).toBeGreaterThan(20);
    expect(used.has('GRPO_ERR_CONFIG')).toBe(true);
    expect(entries.length).toBeGreaterThan(20);
  });

  it('has an entry for every code used under src/', () => {
    const listed = new Set(entries);
    const missing = [...used].filter(([code]) => !listed.has(code)).map(([code, file]) => `${code} (used in ${file})`);
    expect(missing, 'add a table row for each of these codes to docs/errors.md').toEqual([]);
  });

  it('names no code that src/ no longer uses', () => {
    const stale = [...codesIn(markdown)].filter((code) => !used.has(code));
    expect(stale, 'remove these codes from docs/errors.md, or rename them to the code src/ now uses').toEqual([]);
  });

  it('lists each code once', () => {
    const repeated = entries.filter((code, i) => entries.indexOf(code) !== i);
    expect(repeated).toEqual([]);
  });

  it('shows how errors reach the user: the CLI line, the exit statuses, the wire form and GrpoError', () => {
    expect(markdown).toContain('error GRPO_ERR_X: message');
    expect(markdown).toMatch(/status 1/);
    expect(markdown).toMatch(/status 2/);
    expect(markdown).toContain('{ code, message }');
    expect(markdown).toContain('GrpoError');
    expect(markdown).toContain('docs/protocol.md');
  });
});

describe('the scanners', () => {
  it('take codes but not placeholders, prefixes or the template type', () => {
    const text = "throw new GrpoError('GRPO_ERR_A1', 'x'); // GRPO_ERR_X, GRPO_ERR_REWARD_*, `GRPO_ERR_${Uppercase<string>}`";
    expect([...codesIn(text)]).toEqual(['GRPO_ERR_A1']);
  });

  it('read entries from headings and first table cells only', () => {
    const md = [
      '## `GRPO_ERR_HEAD`',
      '| `GRPO_ERR_CELL` | meaning | what to do |',
      '| GRPO_ERR_PLAIN | meaning |',
      '| meaning | `GRPO_ERR_SECOND_CELL` |',
      'Prose about `GRPO_ERR_PROSE`.',
    ].join('\n');
    expect(docEntries(md)).toEqual(['GRPO_ERR_HEAD', 'GRPO_ERR_CELL', 'GRPO_ERR_PLAIN']);
  });
});
