/**
 * Reading a dataset file into records, each with where it came from, so every later complaint
 * can name the file and the line (or row) and the field.
 *
 *   .jsonl .ndjson   one JSON object per line; blank lines are allowed and skipped; `line N`
 *   .json            an array of objects, or an object whose one array-valued key holds them
 *                    (`{"data": [...]}`); `record N` (0-based index in the array). A .json file
 *                    of one object per line (what `datasets`' to_json() writes) is read as JSONL
 *   .csv             RFC 4180: a header row, "quoted" fields with "" escapes and newlines inside
 *                    quotes, CRLF or LF; every value is a string; `line N` of the record's start
 *   .parquet         through `hyparquet` with `hyparquet-compressors` (uncompressed, snappy, gzip,
 *                    brotli, zstd, lz4: what pyarrow, Spark and `datasets` write); INT64 values become numbers
 *                    when exact, else strings; `row N` (0-based)
 *
 * Errors are GRPO_ERR_DATASET (file missing or unreadable) and GRPO_ERR_DATASET_FORMAT (the
 * content does not parse), each naming the file and the place.
 */
import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { GrpoError } from '../../shared/errors.js';

export interface DatasetRecord {
  value: Record<string, unknown>;
  /** "line 12", "record 3" or "row 7": where in the file the record is, for messages. */
  where: string;
}

export const DATASET_FORMATS = ['.jsonl', '.ndjson', '.json', '.csv', '.parquet'] as const;

function formatError(file: string, msg: string, cause?: unknown): GrpoError {
  return new GrpoError('GRPO_ERR_DATASET_FORMAT', `${file}: ${msg}`, cause === undefined ? undefined : { cause });
}

function isObject(x: unknown): x is Record<string, unknown> {
  return x !== null && typeof x === 'object' && !Array.isArray(x);
}

async function readText(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const what = e.code === 'ENOENT' ? 'no such file' : e.message;
    throw new GrpoError('GRPO_ERR_DATASET', `cannot read dataset ${file}: ${what}`, { cause: err });
  }
}

function readJsonl(file: string, text: string): DatasetRecord[] {
  const out: DatasetRecord[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (err) {
      throw formatError(file, `line ${i + 1} is not valid JSON: ${(err as Error).message}`, err);
    }
    if (!isObject(value)) throw formatError(file, `line ${i + 1} holds ${Array.isArray(value) ? 'an array' : typeof value}, expected a JSON object`);
    out.push({ value, where: `line ${i + 1}` });
  }
  return out;
}

function readJson(file: string, text: string): DatasetRecord[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    // datasets' to_json() writes JSON Lines under a .json name by default: read it as such
    if (text.trimStart().startsWith('{')) return readJsonl(file, text);
    throw formatError(file, `not valid JSON: ${(err as Error).message}`, err);
  }
  if (isObject(value)) {
    const arrays = Object.entries(value).filter(([, v]) => Array.isArray(v));
    if (arrays.length !== 1) {
      throw formatError(file, `expected an array of records, or an object with exactly one array-valued key; found keys ${Object.keys(value).join(', ') || '(none)'}`);
    }
    value = arrays[0][1];
  }
  if (!Array.isArray(value)) throw formatError(file, `holds ${typeof value}, expected an array of records`);
  return value.map((v, i) => {
    if (!isObject(v)) throw formatError(file, `record ${i} is ${Array.isArray(v) ? 'an array' : typeof v}, expected an object`);
    return { value: v, where: `record ${i}` };
  });
}

/** RFC 4180 rows with the 1-based line each starts on. */
export function parseCsv(file: string, text: string): { fields: string[]; line: number }[] {
  const rows: { fields: string[]; line: number }[] = [];
  let fields: string[] = [];
  let field = '';
  let quoted = false; // inside a quoted field
  let line = 1;
  let rowLine = 1;
  let fieldStarted = false; // the current row has content (so a final row without newline counts)
  const endRow = (): void => {
    fields.push(field);
    if (!(fields.length === 1 && fields[0] === '' && !fieldStarted)) rows.push({ fields, line: rowLine });
    fields = [];
    field = '';
    fieldStarted = false;
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') {
        quoted = false;
      } else {
        if (c === '\n') line++;
        field += c;
      }
      continue;
    }
    if (c === '"' && field === '') {
      quoted = true;
      fieldStarted = true;
    } else if (c === ',') {
      fields.push(field);
      field = '';
      fieldStarted = true;
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      endRow();
      line++;
      rowLine = line;
    } else {
      field += c;
      fieldStarted = true;
    }
  }
  if (quoted) throw formatError(file, `line ${rowLine}: a quoted field is never closed`);
  if (field !== '' || fields.length > 0 || fieldStarted) endRow();
  return rows;
}

function readCsv(file: string, text: string): DatasetRecord[] {
  const rows = parseCsv(file, text.replace(/^\uFEFF/, ''));
  if (rows.length === 0) throw formatError(file, 'is empty; a CSV dataset needs a header row');
  const header = rows[0].fields;
  const dup = header.find((h, i) => header.indexOf(h) !== i);
  if (dup !== undefined) throw formatError(file, `the header names column ${JSON.stringify(dup)} twice`);
  return rows.slice(1).map(({ fields, line }) => {
    if (fields.length !== header.length) {
      throw formatError(file, `line ${line} has ${fields.length} fields, the header has ${header.length}`);
    }
    return { value: Object.fromEntries(header.map((h, i) => [h, fields[i]])), where: `line ${line}` };
  });
}

/** INT64 columns arrive as BigInt: numbers when exact, else their decimal text. */
function plain(v: unknown): unknown {
  if (typeof v === 'bigint') return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
  if (Array.isArray(v)) return v.map(plain);
  if (isObject(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

async function readParquet(file: string): Promise<DatasetRecord[]> {
  let rows: Record<string, unknown>[];
  try {
    const buffer = await asyncBufferFromFile(file);
    rows = (await parquetReadObjects({ file: buffer, compressors })) as Record<string, unknown>[];
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') throw new GrpoError('GRPO_ERR_DATASET', `cannot read dataset ${file}: no such file`, { cause: err });
    throw formatError(file, `hyparquet cannot read it: ${e.message}`, err);
  }
  return rows.map((r, i) => ({ value: plain(r) as Record<string, unknown>, where: `row ${i}` }));
}

/** Every record of a dataset file, in file order. The format comes from the extension. */
export async function readDatasetFile(file: string): Promise<DatasetRecord[]> {
  const ext = extname(file).toLowerCase();
  switch (ext) {
    case '.jsonl':
    case '.ndjson':
      return readJsonl(file, await readText(file));
    case '.json':
      return readJson(file, await readText(file));
    case '.csv':
      return readCsv(file, await readText(file));
    case '.parquet':
      return readParquet(file);
    default:
      throw new GrpoError('GRPO_ERR_DATASET_FORMAT', `${file}: unknown dataset format ${JSON.stringify(ext || '(no extension)')}; use ${DATASET_FORMATS.join(', ')}`);
  }
}
