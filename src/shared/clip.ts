/**
 * Bounded echoes of untrusted values. Whatever a peer sends may be megabytes long; replies and
 * log lines quote at most a short prefix of it, so a hostile peer cannot make the coordinator
 * copy its input into memory or logs (issue 16: an 8 MiB `kind` was echoed in full).
 */

/** Characters of an offending value quoted in an error message or a log field. */
export const ECHO_CHARS = 120;
/** Characters of a whole error message built around such a value (a peer's Error text, a zod issue). */
export const MESSAGE_CHARS = 1_024;

/** `s` itself when short, else its first `max` characters and how much was left out. */
export function clipText(s: string, max = MESSAGE_CHARS): string {
  if (s.length <= max) return s;
  return `${s.slice(0, max)}... (${s.length - max} more chars)`;
}

/** A short, JSON-like rendering of any value for an error message: strings quoted, all clipped. */
export function echoValue(value: unknown, max = ECHO_CHARS): string {
  if (typeof value === 'string') {
    return value.length <= max ? JSON.stringify(value) : `${JSON.stringify(value.slice(0, max))}... (${value.length} chars)`;
  }
  if (value instanceof Uint8Array) return `bin of ${value.byteLength} bytes`;
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = Object.prototype.toString.call(value);
  }
  return clipText(text, max);
}
