/**
 * The file piscina loads in each reward thread: CommonJS on purpose, so piscina's `require()` of
 * its task file never loads an ES module synchronously. Node 20.19+ does `require(esm)`, and a
 * thread terminated while it is inside that synchronous load (a pool closed during its threads'
 * start: a worker stopping or replacing its pool right after making it) aborts the whole
 * process with a V8 fatal error ("IsGraphAsync must be used on an instantiated module"). The
 * handler module (./reward-thread.ts) is loaded here with `import()`, whose asynchronous load a
 * termination ends cleanly; the load starts when the thread starts, so the first task does not
 * wait for it any more than before.
 */
type Handler = (typeof import('./reward-thread.js'))['default'];

const loading: Promise<Handler> = import('./reward-thread.js').then((m) => m.default);
// a failed load is reported by the first task that awaits it, not as an unhandled rejection
loading.catch(() => undefined);

async function handle(req: Parameters<Handler>[0]): Promise<Awaited<ReturnType<Handler>>> {
  return (await loading)(req);
}

export = handle;
