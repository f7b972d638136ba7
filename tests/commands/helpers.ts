/** A CommandIO that records what a command prints and logs, for in-process command tests. */
import type { CommandIO } from '../../src/commands/io.js';

export interface Captured {
  io: CommandIO;
  out: string[];
  events: { level: string; event: string; fields: Record<string, unknown> }[];
}

export function captureIO(onEvent?: (event: string, fields: Record<string, unknown>) => void): Captured {
  const out: string[] = [];
  const events: Captured['events'] = [];
  return {
    out,
    events,
    io: {
      out: (text) => out.push(text),
      log: (level, event, fields = {}) => {
        events.push({ level, event, fields });
        onEvent?.(event, fields);
      },
      progressStream: null,
    },
  };
}
