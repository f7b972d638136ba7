/**
 * Backward passes that free memory as they go. tfjs's own `engine.gradients` keeps every tensor
 * the forward saved for backward, and every intermediate gradient, until the whole backward pass
 * ends, so the peak of a step holds all layers' activations AND all their gradients at once. On a
 * SmolLM2-135M step (batch 4 x 128) that peak was 6.4 GB of live tensors for 0.5 GB of weights;
 * PyTorch frees each saved tensor as soon as its node has run backward.
 *
 * This replaces `engine.gradients` with the same algorithm (tfjs-core 4.x: tape.ts
 * backpropagateGradients and engine.ts gradients) plus two frees right after each tape node's
 * input gradients are computed:
 *   - the node's saved tensors (each is the engine's own kept clone, used only by this node's
 *     gradient), when not inside a higher-order gradient (gradientDepth 0, where tfjs frees them
 *     at the end anyway);
 *   - the gradients of the node's outputs, which nothing reads again (an output is produced by
 *     exactly one node, and the tape is in execution order), unless it is a result (one of xs),
 *     the caller's dy, or the very tensor just stored as an input's gradient.
 * Values are untouched: the same kernels run in the same order. (tfjs-core's ESM build cannot
 * be imported piecemeal from Node, so the tape filter is ported here too.)
 */
import type { tf as TF } from './tf.js';

type Tensor = TF.Tensor;

interface TapeNode {
  id: number;
  kernelName: string;
  outputs: Tensor[];
  inputs: Record<string, Tensor>;
  gradient?: (dys: Tensor[]) => Record<string, () => Tensor>;
  saved?: Tensor[];
}

interface EngineInternals {
  state: { activeTape: TapeNode[] | null; gradientDepth: number };
  scopedRun<T>(start: () => void, end: () => void, f: () => T): T;
  startTape(): void;
  endTape(): void;
  tidy<T>(nameOrFn: string | (() => T), fn?: () => T): T;
  gradients: (f: () => Tensor, xs: Tensor[], dy?: Tensor, allowNoGradients?: boolean) => { value: Tensor; grads: Tensor[] };
}

const installed = new WeakSet<object>();

/** Installs the freeing backward pass on `tfns`'s engine (once per engine). */
export function installEagerBackprop(tfns: typeof TF): void {
  const engine = tfns.engine() as unknown as EngineInternals;
  if (installed.has(engine)) return;
  installed.add(engine);
  engine.gradients = function gradients(f, xs, dy, allowNoGradients = false) {
    if (xs.length === 0) throw new Error('gradients() received an empty list of xs.');
    if (dy != null && dy.dtype !== 'float32') throw new Error(`dy must have 'float32' dtype, but has '${dy.dtype}'`);
    const y = engine.scopedRun(
      () => engine.startTape(),
      () => engine.endTape(),
      () => engine.tidy('forward', f),
    );
    if (!(y instanceof tfns.Tensor)) throw new Error('The result y returned by f() must be a tensor.');
    const tape = engine.state.activeTape ?? [];
    const filtered = nodesFromXToY(tape, xs, y);
    if (!allowNoGradients && filtered.length === 0 && xs.length > 0) {
      throw new Error('Cannot compute gradient of y=f(x) with respect to x. Make sure that the f you passed encloses all operations that lead from x to y.');
    }
    return engine.tidy('backward', () => {
      const acc: Record<number, Tensor> = {};
      acc[y.id] = dy ?? tfns.ones(y.shape);
      const results = new Set(xs.map((x) => x.id));
      const eager = engine.state.gradientDepth === 0;
      backprop(acc, filtered, (fn) => engine.tidy(fn), eager, results, dy ?? null);
      const grads = xs.map((x) => acc[x.id]);
      if (engine.state.gradientDepth === 0) {
        for (const node of tape) for (const t of node.saved ?? []) t.dispose();
        engine.state.activeTape = null;
      }
      return { value: y, grads };
    });
  };
}

function backprop(
  acc: Record<number, Tensor>,
  tape: TapeNode[],
  tidy: (f: () => Tensor) => Tensor,
  eager: boolean,
  results: Set<number>,
  dy: Tensor | null,
): void {
  for (let i = tape.length - 1; i >= 0; i--) {
    const node = tape[i];
    const dys = node.outputs.map((o) => acc[o.id] ?? null) as Tensor[];
    if (node.gradient == null) throw new Error(`Cannot compute gradient: gradient function not found for ${node.kernelName}.`);
    const inputGradients = node.gradient(dys);
    const stored = new Set<Tensor>();
    for (const inputName in node.inputs) {
      if (!(inputName in inputGradients)) {
        throw new Error(`Cannot backprop through input ${inputName}. Available gradients found: ${Object.keys(inputGradients)}.`);
      }
      const dx = tidy(() => inputGradients[inputName]());
      if (dx.dtype !== 'float32') {
        throw new Error(`Error in gradient for op ${node.kernelName}. The gradient of input ${inputName} must have 'float32' dtype, but has '${dx.dtype}'`);
      }
      const x = node.inputs[inputName];
      if (dx.shape.length !== x.shape.length || dx.shape.some((d, k) => d !== x.shape[k])) {
        throw new Error(`Error in gradient for op ${node.kernelName}. The gradient of input '${inputName}' has shape '${dx.shape}', which does not match the shape of the input '${x.shape}'`);
      }
      const cur = acc[x.id];
      if (cur == null) acc[x.id] = dx;
      else {
        acc[x.id] = cur.add(dx);
        cur.dispose();
      }
      stored.add(acc[x.id]);
    }
    if (!eager) continue;
    for (const t of node.saved ?? []) t.dispose();
    for (const o of node.outputs) {
      const g = acc[o.id];
      if (g == null || results.has(o.id) || g === dy || stored.has(g)) continue;
      g.dispose();
      delete acc[o.id];
    }
  }
}

/**
 * The tape nodes on a path from some x to y, each with its inputs pruned to those that depend on
 * an x (tfjs-core tape.ts getFilteredNodesXToY, same order and pruning).
 */
function nodesFromXToY(tape: TapeNode[], xs: Tensor[], y: Tensor): TapeNode[] {
  const fromX = new Set<number>(xs.map((x) => x.id));
  const nodesFromX = new Set<number>();
  for (const node of tape) {
    if (Object.values(node.inputs).some((t) => fromX.has(t.id))) {
      for (const o of node.outputs) fromX.add(o.id);
      nodesFromX.add(node.id);
    }
  }
  const toY = new Set<number>([y.id]);
  const nodesToY = new Set<number>();
  for (let i = tape.length - 1; i >= 0; i--) {
    const node = tape[i];
    if (node.outputs.some((o) => toY.has(o.id))) {
      const inputs = Object.values(node.inputs);
      for (const t of inputs) toY.add(t.id);
      if (inputs.length > 0) nodesToY.add(node.id);
    }
  }
  const out: TapeNode[] = [];
  for (const node of tape) {
    if (!nodesFromX.has(node.id) || !nodesToY.has(node.id)) continue;
    const inputs: Record<string, Tensor> = {};
    for (const [name, t] of Object.entries(node.inputs)) if (fromX.has(t.id)) inputs[name] = t;
    out.push({ ...node, inputs, outputs: node.outputs });
  }
  return out;
}
