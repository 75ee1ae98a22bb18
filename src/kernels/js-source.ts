import { setFlagsFromString } from 'node:v8';
import { emitBody, indexedNames, javascript } from '../expr/emit.js';
import type { Scalar } from '../expr/expr.js';
import { loopInvariantNodes, StepGraphs, tapeNodes } from './graphs.js';

/** Generated kernels up to this size are optimised (V8's default is 60 KB). */
const MAX_OPTIMIZED_BYTECODE_BYTES = 16 * 1024 * 1024;

// V8 leaves a function's bytecode over 60 KB to the interpreter: a generated
// kernel of a many-joint model (a 3-link arm's gradient) then runs 10-15x
// slower than compiled. The flag is read when V8 decides to optimise, and is
// process-wide (kernel threads included).
setFlagsFromString(`--max-optimized-bytecode-size=${MAX_OPTIMIZED_BYTECODE_BYTES}`);

export type KernelKind = 'cost' | 'trajectory' | 'grad';

/**
 * Every generated CPU kernel has this signature so one worker protocol runs
 * them all. Layouts (row-major): U [M][T][m], W [M][T][k], C [M];
 * trajectory: A = states [M][T+1][n]; grad: A = dJ/dU [M][T][m], S = scratch
 * [(T+1) n + T tapeLength] (states, then the per-step tape).
 */
export type CpuKernel = (
  U: Float64Array, X0: Float64Array, UP: Float64Array, R: Float64Array, W: Float64Array,
  C: Float64Array, A: Float64Array, S: Float64Array, s0: number, s1: number,
) => void;

const lets = (names: string[], init: (i: number) => string) =>
  names.length ? `let ${names.map((nm, i) => `${nm} = ${init(i)}`).join(', ')};` : '';
const assignAll = (names: string[], values: string[], tmp: string) =>
  names.length
    ? `const ${names.map((_, i) => `${tmp}${i} = ${values[i]}`).join(', ')}; ${names.map((nm, i) => `${nm} = ${tmp}${i};`).join(' ')}`
    : '';

/** JavaScript source of one rollout kernel (an expression evaluating to a CpuKernel). */
export function jsKernelSource(graphs: StepGraphs, kind: KernelKind): string {
  const { model, noise } = graphs;
  const { stateDim: n, controlDim: m, noiseDim: k, horizon: T } = model;
  const kw = noise ? k : 0;
  const xs = indexedNames('x', n);
  const us = indexedNames('u', m);
  const ps = indexedNames('p', m);
  const ws = indexedNames('w', kw);
  const as = indexedNames('a', n);

  const outputs: Scalar[] = [graphs.next, graphs.stage, graphs.terminal].flat();
  if (kind === 'grad') outputs.push(...graphs.gradX, ...graphs.gradU, ...graphs.gradPrev, ...graphs.gradTerminal);
  const hoisted = loopInvariantNodes(outputs);
  const prologue = emitBody(hoisted, javascript);
  const declared = new Set(hoisted.map((h) => h.id));

  const fwd = emitBody([...graphs.next, graphs.stage], javascript, declared);
  const backOutputs = [...graphs.gradX, ...graphs.gradU, ...graphs.gradPrev];
  const tape = kind === 'grad' ? tapeNodes([...graphs.next, graphs.stage], backOutputs, declared) : [];
  const tapeBase = (T + 1) * n;
  const term = emitBody([graphs.terminal, ...(kind === 'grad' ? graphs.gradTerminal : [])], javascript, declared);
  const nextRefs = fwd.refs.slice(0, n);
  const stageRef = fwd.refs[n];

  const load = (names: string[], arr: string, base: string) => names.map((nm, i) => `${nm} = ${arr}[${base} + ${i}];`).join(' ');
  const store = (names: string[], arr: string, base: string) => names.map((nm, i) => `${arr}[${base} + ${i}] = ${nm};`).join(' ');

  const lines: string[] = [];
  lines.push('(function (U, X0, UP, R, W, C, A, S, s0, s1) {', '"use strict";');
  lines.push(n ? `const ${indexedNames('r', n).map((r, i) => `${r} = R[${i}]`).join(', ')};` : '');
  lines.push(...prologue.code);
  lines.push('for (let s = s0; s < s1; s++) {');
  lines.push(lets(xs, (i) => `X0[${i}]`), lets(ps, (i) => `UP[${i}]`), lets(us, () => '0'), lets(ws, () => '0'));
  if (kind === 'grad') lines.push(lets(as, () => '0'));
  lines.push(`let acc = 0; let o = s * ${T * m}; let ow = s * ${T * kw};`);
  if (kind === 'trajectory') lines.push(`let ox = s * ${(T + 1) * n};`);
  lines.push(`for (let t = 0; t < ${T}; t++, o += ${m}, ow += ${kw}) {`);
  if (kind === 'grad') lines.push(store(xs, 'S', `t * ${n}`));
  if (kind === 'trajectory') lines.push(store(xs, 'A', 'ox'), `ox += ${n};`);
  lines.push(load(us, 'U', 'o'), load(ws, 'W', 'ow'));
  lines.push(...fwd.code);
  if (tape.length) lines.push(`{ const tb = ${tapeBase} + t * ${tape.length}; ${tape.map((e, j) => `S[tb + ${j}] = v${e.id};`).join(' ')} }`);
  lines.push(`acc += ${stageRef};`);
  lines.push(assignAll(xs, nextRefs, 'nx'));
  lines.push(ps.map((pn, i) => `${pn} = ${us[i]};`).join(' '));
  lines.push('}');
  if (kind === 'trajectory') lines.push(store(xs, 'A', 'ox'));
  lines.push('{', ...term.code, `C[s] = acc + ${term.refs[0]};`);
  if (kind === 'grad') lines.push(as.map((an, i) => `${an} = ${term.refs[1 + i]};`).join(' '));
  lines.push('}');

  if (kind === 'grad') {
    // Reverse sweep: a holds dJ/dx_{t+1}; q holds dl_{t+1}/du_t, owed to u_t.
    const qs = indexedNames('q', m);
    const back = emitBody(backOutputs, javascript, new Set([...declared, ...tape.map((e) => e.id)]));
    const gx = back.refs.slice(0, n);
    const gu = back.refs.slice(n, n + m);
    const gp = back.refs.slice(n + m);
    lines.push(lets(qs, () => '0'));
    lines.push(`for (let t = ${T - 1}; t >= 0; t--) {`);
    lines.push(`const ou = s * ${T * m} + t * ${m};`, `const owt = s * ${T * kw} + t * ${kw};`);
    lines.push(load(xs, 'S', `t * ${n}`), load(us, 'U', 'ou'), load(ws, 'W', 'owt'));
    if (m) lines.push(`if (t > 0) { ${load(ps, 'U', `ou - ${m}`)} } else { ${load(ps, 'UP', '0')} }`);
    if (tape.length) lines.push(`const tb = ${tapeBase} + t * ${tape.length};`, tape.map((e, j) => `const v${e.id} = S[tb + ${j}];`).join(' '));
    lines.push(...back.code);
    lines.push(us.map((_, j) => `A[ou + ${j}] = ${gu[j]} + ${qs[j]};`).join(' '));
    lines.push(assignAll(qs, gp, 'nq'));
    lines.push(assignAll(as, gx, 'na'));
    lines.push('}');
  }
  lines.push('}', '})');
  return lines.filter((l) => l !== '').join('\n');
}

export function compileJsKernel(graphs: StepGraphs, kind: KernelKind): CpuKernel {
  return compileKernelSource(jsKernelSource(graphs, kind));
}

export function compileKernelSource(source: string): CpuKernel {
  // The source is generated from our own expression graphs, never from user text.
  return (0, eval)(source) as CpuKernel;
}

/** Scratch doubles a thread needs for one sample of this kernel. */
export function jsScratchLength(graphs: StepGraphs, kind: KernelKind): number {
  if (kind !== 'grad') return 0;
  const { stateDim: n, horizon: T } = graphs.model;
  const forward = [...graphs.next, graphs.stage];
  const declared = new Set(loopInvariantNodes([forward, graphs.terminal, graphs.gradX, graphs.gradU, graphs.gradPrev, graphs.gradTerminal].flat()).map((h) => h.id));
  return (T + 1) * n + T * tapeNodes(forward, [...graphs.gradX, ...graphs.gradU, ...graphs.gradPrev], declared).length;
}

/** One plant step for one sample, x' = f(x, u, w), for simulators: `(x, u, w) => x'`. */
export type StepFunction = (x: readonly number[], u: readonly number[], w: readonly number[]) => number[];

export function compileStepFunction(graphs: StepGraphs): StepFunction {
  const { stateDim: n, controlDim: m, noiseDim: k } = graphs.model;
  const body = emitBody(graphs.next, javascript);
  const source = [
    '(function (X, U, W) {',
    '"use strict";',
    ...indexedNames('x', n).map((x, i) => `const ${x} = X[${i}];`),
    ...indexedNames('u', m).map((u, i) => `const ${u} = U[${i}];`),
    ...(graphs.noise ? indexedNames('w', k).map((w, i) => `const ${w} = W[${i}];`) : []),
    ...body.code,
    `return [${body.refs.join(', ')}];`,
    '})',
  ].join('\n');
  return (0, eval)(source) as StepFunction;
}

/** The terminal cost of one state, for one sample: `(x, ref) => l_T`. */
export type TerminalCostFunction = (x: readonly number[], ref: readonly number[]) => number;

/** The stage cost l(x, u, u_prev, ref) of one step, for one sample: `(x, u, uPrev, ref) => l`. */
export type StageCostFunction = (x: readonly number[], u: readonly number[], uPrev: readonly number[], ref: readonly number[]) => number;

export function compileTerminalCostFunction(graphs: StepGraphs): TerminalCostFunction {
  const { stateDim: n } = graphs.model;
  return compileScalarFunction(graphs.terminal, [['X', 'x', n], ['R', 'r', n]]) as TerminalCostFunction;
}

export function compileStageCostFunction(graphs: StepGraphs): StageCostFunction {
  const { stateDim: n, controlDim: m } = graphs.model;
  return compileScalarFunction(graphs.stage, [['X', 'x', n], ['U', 'u', m], ['P', 'p', m], ['R', 'r', n]]) as StageCostFunction;
}

/** One scalar of the graphs as a plain function of arrays: each argument names its array, the graph's input prefix and its length. */
function compileScalarFunction(output: Scalar, args: readonly (readonly [string, string, number])[]): (...arrays: (readonly number[])[]) => number {
  const vector = compileVectorFunction([output], args);
  return (...arrays) => vector(...arrays)[0];
}

/** Expressions of a graph as a plain function of arrays returning their values in order: each argument names its array, the graph's input prefix and its length. */
export function compileVectorFunction(outputs: readonly Scalar[], args: readonly (readonly [string, string, number])[]): (...arrays: (readonly number[])[]) => number[] {
  const kernel = compileVectorKernel(outputs, args);
  return (...arrays) => {
    const out = new Float64Array(outputs.length);
    kernel(out, 0, ...arrays.flatMap((a) => [a, 0]));
    return Array.from(out);
  };
}

/**
 * Expressions of a graph as an allocation-free kernel for inner loops: it writes the
 * outputs to OUT[outOffset..] and reads each argument array from its own
 * offset, `(OUT, outOffset, A, aOffset, B, bOffset, ...) => void`.
 */
export type VectorKernel = (out: Float64Array, outOffset: number, ...arraysAndOffsets: (ArrayLike<number> | number)[]) => void;

export function compileVectorKernel(outputs: readonly Scalar[], args: readonly (readonly [string, string, number])[]): VectorKernel {
  const body = emitBody(outputs, javascript);
  const source = [
    `(function (OUT, o, ${args.map(([name]) => `${name}, ${name}o`).join(', ')}) {`,
    '"use strict";',
    ...args.flatMap(([name, prefix, length]) => indexedNames(prefix, length).map((v, i) => `const ${v} = ${name}[${name}o + ${i}];`)),
    ...body.code,
    ...body.refs.map((r, i) => `OUT[o + ${i}] = ${r};`),
    '})',
  ].join('\n');
  return (0, eval)(source) as VectorKernel;
}
