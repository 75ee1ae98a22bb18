import { add, dot, Expr, Graph, Scalar } from '../expr/expr.js';
import { gradient, reachable } from '../expr/grad.js';
import type { Model, ParamValues } from '../models/model.js';

/**
 * The per-step graphs every rollout kernel is made of, built once from a
 * model definition. Input names: x state, u control, p previous control,
 * r reference, w noise, a adjoint (dJ/dx of the next state).
 *
 * The backward step differentiates the Hamiltonian H = l_t(x, u, p) + a·f(x, u, w):
 * dH/dx is the adjoint at x_t, dH/du the gradient for u_t, and dH/dp the
 * part of the gradient for u_{t-1} contributed by this stage (Theorem 2's
 * adjoint recursion, extended to costs that see the previous control).
 */
export interface StepGraphs {
  model: Model;
  noise: boolean;
  /** the graph's inputs: state, control, previous control, reference (further derivatives are taken with respect to them) */
  inputs: { x: Expr[]; u: Expr[]; prev: Expr[]; ref: Expr[] };
  next: Scalar[];
  stage: Scalar;
  terminal: Scalar;
  gradX: Scalar[];
  gradU: Scalar[];
  gradPrev: Scalar[];
  gradTerminal: Scalar[];
}

export function buildStepGraphs(model: Model, noise: boolean): StepGraphs {
  const { stateDim: n, controlDim: m, noiseDim: k, def } = model;
  const g = new Graph();
  const x = g.inputs('x', n);
  const u = g.inputs('u', m);
  const prev = g.inputs('p', m);
  const ref = g.inputs('r', n);
  const w: Scalar[] = noise ? g.inputs('w', k) : new Array<number>(k).fill(0);
  const adj = g.inputs('a', n);
  const p = model.params as ParamValues<string>;
  const next = def.step(x, u, w, p);
  if (next.length !== n) throw new Error(`${def.name}: step returned ${next.length} states, expected ${n}`);
  const stage = def.stageCost(x, u, prev, ref, p);
  const terminal = def.terminalCost(x, ref, p);
  const hamiltonian = add(stage, dot(adj, next));
  const grads = gradient(hamiltonian, [...x, ...u, ...prev]);
  return {
    model,
    noise,
    inputs: { x, u, prev, ref },
    next,
    stage,
    terminal,
    gradX: grads.slice(0, n),
    gradU: grads.slice(n, n + m),
    gradPrev: grads.slice(n + m),
    gradTerminal: gradient(terminal, x),
  };
}

/**
 * Nodes that depend only on the reference (and constants): they are the same
 * at every step and sample, so kernels compute them once before their loops.
 */
export function loopInvariantNodes(outputs: readonly Scalar[]): Expr[] {
  const invariant = new Map<number, boolean>();
  const hoisted: Expr[] = [];
  for (const n of reachable(outputs)) {
    let inv: boolean;
    if (n.op === 'const') inv = true;
    else if (n.op === 'input') inv = n.name.startsWith('r');
    else inv = n.args.every((a) => invariant.get(a.id));
    invariant.set(n.id, inv);
    if (inv && n.op !== 'const' && n.op !== 'input') hoisted.push(n);
  }
  return hoisted;
}

/** Does any of these outputs read an input with this name prefix? */
export function readsInput(outputs: readonly Scalar[], prefix: string): boolean {
  return reachable(outputs).some((n) => n.op === 'input' && n.name.startsWith(prefix));
}

/**
 * The forward intermediates the backward step reads directly: nodes computed
 * in the forward step that are operands of backward-only nodes (or are
 * backward outputs themselves). Storing them per step during the forward
 * sweep spares the backward sweep from recomputing the step.
 */
export function tapeNodes(forward: readonly Scalar[], backward: readonly Scalar[], hoisted: ReadonlySet<number>): Expr[] {
  const inForward = new Set(reachable(forward).map((e) => e.id));
  const isTaped = (e: Expr) => inForward.has(e.id) && e.op !== 'const' && e.op !== 'input' && !hoisted.has(e.id);
  const tape = new Map<number, Expr>();
  for (const n of reachable(backward)) {
    if (inForward.has(n.id)) continue;
    for (const a of n.args) if (isTaped(a)) tape.set(a.id, a);
  }
  for (const out of backward) if (typeof out !== 'number' && isTaped(out)) tape.set(out.id, out);
  return [...tape.values()].sort((a, b) => a.id - b.id);
}
