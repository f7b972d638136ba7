import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { parseCsv, readDatasetFile } from '../../../src/tasks/dataset/read.js';

const dir = mkdtempSync(join(tmpdir(), 'grpo-dataset-read-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, text: string): string => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};
const PARQUET = fileURLToPath(new URL('../../fixtures/datasets/math.parquet', import.meta.url));

describe('readDatasetFile: formats', () => {
  it('reads JSONL with line numbers, skipping blank lines', async () => {
    const p = file('a.jsonl', '{"q": "one", "a": 1}\n\n{"q": "two", "a": {"x": [2]}}\n');
    expect(await readDatasetFile(p)).toEqual([
      { value: { q: 'one', a: 1 }, where: 'line 1' },
      { value: { q: 'two', a: { x: [2] } }, where: 'line 3' },
    ]);
  });

  it('reads a JSON array, or an object with one array-valued key', async () => {
    expect(await readDatasetFile(file('b.json', '[{"q": "x"}, {"q": "y"}]'))).toEqual([
      { value: { q: 'x' }, where: 'record 0' },
      { value: { q: 'y' }, where: 'record 1' },
    ]);
    expect((await readDatasetFile(file('c.json', '{"version": 2, "data": [{"q": "x"}]}'))).map((r) => r.value)).toEqual([{ q: 'x' }]);
  });

  it("reads a .json file of one object per line (datasets' to_json default) as JSONL", async () => {
    expect(await readDatasetFile(file('lines.json', '{"q": "x"}\n{"q": "y"}\n'))).toEqual([
      { value: { q: 'x' }, where: 'line 1' },
      { value: { q: 'y' }, where: 'line 2' },
    ]);
    await expect(readDatasetFile(file('lines-bad.json', '{"q": "x"}\n{"q": \n'))).rejects.toThrow(/lines-bad\.json: line 2 is not valid JSON/);
    await expect(readDatasetFile(file('bad.json', '[{"q": 1},'))).rejects.toThrow(/bad\.json: not valid JSON/);
  });

  it('reads CSV: quotes, escaped quotes, commas and newlines in fields, CRLF, a BOM, no final newline', async () => {
    const p = file('d.csv', '\uFEFFquestion,answer\r\n"Say ""hi"", then\ncount to 3",3\r\nplain,"1,000"');
    expect(await readDatasetFile(p)).toEqual([
      { value: { question: 'Say "hi", then\ncount to 3', answer: '3' }, where: 'line 2' },
      { value: { question: 'plain', answer: '1,000' }, where: 'line 4' },
    ]);
  });

  it('keeps empty CSV fields and counts lines inside quoted fields', () => {
    expect(parseCsv('x.csv', 'a,b\n,\n"x\ny",z\n')).toEqual([
      { fields: ['a', 'b'], line: 1 },
      { fields: ['', ''], line: 2 },
      { fields: ['x\ny', 'z'], line: 3 },
    ]);
  });

  it('reads the Parquet fixture (snappy, written by hyparquet-writer): strings, and INT64 as exact numbers or text', async () => {
    const rows = await readDatasetFile(PARQUET);
    expect(rows.map((r) => r.where)).toEqual(['row 0', 'row 1', 'row 2', 'row 3']);
    expect(rows[0].value).toEqual({ id: 1, question: 'Ava has 3 boxes of 4 apples. How many apples does she have?', answer: '3 * 4 = 12\n#### 12' });
    expect(rows[3].value.id).toBe('9007199254740993'); // beyond 2^53: kept exact as text
    expect(rows[2].value.answer).toBe('10 - 13 = -3\n#### -3');
  });

  it.each(['gzip', 'brotli', 'zstd'])('reads the same rows from a %s-compressed Parquet file', async (codec) => {
    const expected = await readDatasetFile(PARQUET);
    const file = fileURLToPath(new URL(`../../fixtures/datasets/math-${codec}.parquet`, import.meta.url));
    expect(await readDatasetFile(file)).toEqual(expected);
  });
});

describe('readDatasetFile: bad input names the file and the place', () => {
  const fails = async (p: string, code: string, pattern: RegExp) => {
    const err = await readDatasetFile(p).then(() => null, (e: unknown) => e);
    expect(err).toMatchObject({ code });
    expect((err as Error).message).toMatch(pattern);
  };

  it('a missing file', () => fails(join(dir, 'nope.jsonl'), 'GRPO_ERR_DATASET', /nope\.jsonl: no such file/));
  it('a missing parquet file', () => fails(join(dir, 'nope.parquet'), 'GRPO_ERR_DATASET', /no such file/));
  it('an unknown extension', () => fails(file('e.txt', 'x'), 'GRPO_ERR_DATASET_FORMAT', /unknown dataset format "\.txt"; use \.jsonl/));
  it('a JSONL line that does not parse', () => fails(file('f.jsonl', '{"q": 1}\n{"q": \n'), 'GRPO_ERR_DATASET_FORMAT', /f\.jsonl: line 2 is not valid JSON/));
  it('a JSONL line that is not an object', () => fails(file('g.jsonl', '{"q": 1}\n[1, 2]\n'), 'GRPO_ERR_DATASET_FORMAT', /line 2 holds an array, expected a JSON object/));
  it('a JSON file without one array of records', () => fails(file('h.json', '{"a": [], "b": []}'), 'GRPO_ERR_DATASET_FORMAT', /exactly one array-valued key; found keys a, b/));
  it('a JSON record that is not an object', () => fails(file('i.json', '[{"q": 1}, 5]'), 'GRPO_ERR_DATASET_FORMAT', /record 1 is number/));
  it('a CSV row with the wrong number of fields', () => fails(file('j.csv', 'a,b\n1,2\n3\n'), 'GRPO_ERR_DATASET_FORMAT', /j\.csv: line 3 has 1 fields, the header has 2/));
  it('a CSV quote never closed', () => fails(file('k.csv', 'a\n"open\n'), 'GRPO_ERR_DATASET_FORMAT', /line 2: a quoted field is never closed/));
  it('a CSV header naming a column twice', () => fails(file('l.csv', 'a,a\n1,2\n'), 'GRPO_ERR_DATASET_FORMAT', /column "a" twice/));
  it('a file that is not Parquet', () => fails(file('m.parquet', 'not parquet at all'), 'GRPO_ERR_DATASET_FORMAT', /m\.parquet: hyparquet cannot read it/));
});
