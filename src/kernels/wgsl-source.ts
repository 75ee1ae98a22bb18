import { emitBody, indexedNames, wgsl } from '../expr/emit.js';
import type { Scalar } from '../expr/expr.js';
import { loopInvariantNodes, readsInput, StepGraphs } from './graphs.js';
import type { KernelKind } from './js-source.js';

export const WORKGROUP_SIZE = 64;

/** Storage bindings of the generated shaders (a shader declares only those it uses). */
export const BINDING = { U: 0, CTX: 1, W: 2, C: 3, A: 4, S: 5 } as const;

export interface WgslKernel {
  code: string;
  /** Bindings the shader declares, in order. */
  bindings: number[];
}

const vars = (names: string[], init: (i: number) => string) => names.map((nm, i) => `var ${nm}: f32 = ${init(i)};`).join(' ');
const assignAll = (names: string[], values: string[], tmp: string) =>
  names.map((_, i) => `let ${tmp}${i} = ${values[i]};`).join(' ') + ' ' + names.map((nm, i) => `${nm} = ${tmp}${i};`).join(' ');

/**
 * Where a rollout reads its inputs and writes its results, so the same
 * generated rollout serves the rollout kernels (their own buffers) and
 * planners that keep their particles elsewhere (as a WGSL function).
 */
export interface RolloutIo {
  /** the context value at this offset of [M, x0 (n), uPrev (m), reference (n)] */
  context(offset: number): string;
  /** control j of the step whose first control is at offset `o` */
  control(o: string, j: number): string;
  /** the statement storing dJ/du_j of that step */
  storeGrad(o: string, j: number, value: string): string;
  /** the state tape's element at this index (grad only) */
  tape(index: string): string;
}

const BUFFER_IO: RolloutIo = {
  context: (offset) => `ctx[${offset}u]`,
  control: (o, j) => `U[${o} + ${j}u]`,
  storeGrad: (o, j, value) => `A[${o} + ${j}u] = ${value};`,
  tape: (index) => `S[${index}]`,
};

/**
 * A WGSL function `fn NAME(s: u32) -> f32` returning sample s's cost J and,
 * through `io.storeGrad`, its gradient dJ/dU: the grad kernel's rollout and
 * adjoint sweep, for planners that run whole moves on the GPU.
 */
export function wgslCostGradFunction(graphs: StepGraphs, name: string, io: RolloutIo): string {
  return wgslKernelSource(graphs, 'grad', { io, functionName: name }).code;
}

/**
 * One WGSL compute shader per kernel kind: one invocation per sample, the
 * same step graphs as the CPU kernels, in f32. The context buffer holds
 * [M, x0 (n), uPrev (m), reference (n)]; layouts otherwise match the CPU kernels.
 * With `functionName` the same rollout is a function of the sample index
 * returning the cost, reading and writing through `io`, and declaring no buffers.
 */
export function wgslKernelSource(graphs: StepGraphs, kind: KernelKind, as?: { io: RolloutIo; functionName: string }): WgslKernel {
  const io = as?.io ?? BUFFER_IO;
  const { model, noise } = graphs;
  const { stateDim: n, controlDim: m, noiseDim: k, horizon: T } = model;
  const xs = indexedNames('x', n);
  const us = indexedNames('u', m);
  const ps = indexedNames('p', m);
  const adj = indexedNames('a', n);
  const outputs: Scalar[] = [graphs.next, graphs.stage, graphs.terminal].flat();
  if (kind === 'grad') outputs.push(...graphs.gradX, ...graphs.gradU, ...graphs.gradPrev, ...graphs.gradTerminal);
  const usesNoise = noise && readsInput(outputs, 'w');
  const ws = indexedNames('w', usesNoise ? k : 0);
  const usesA = kind === 'grad' ? m > 0 : kind === 'trajectory' && n > 0;
  const usesS = kind === 'grad' && n > 0;

  const bindings: number[] = [BINDING.U, BINDING.CTX];
  const decl: string[] = [
    `@group(0) @binding(${BINDING.U}) var<storage, read> U: array<f32>;`,
    `@group(0) @binding(${BINDING.CTX}) var<storage, read> ctx: array<f32>;`,
  ];
  if (usesNoise) {
    bindings.push(BINDING.W);
    decl.push(`@group(0) @binding(${BINDING.W}) var<storage, read> W: array<f32>;`);
  }
  bindings.push(BINDING.C);
  decl.push(`@group(0) @binding(${BINDING.C}) var<storage, read_write> C: array<f32>;`);
  if (usesA) {
    bindings.push(BINDING.A);
    decl.push(`@group(0) @binding(${BINDING.A}) var<storage, read_write> A: array<f32>;`);
  }
  if (usesS) {
    bindings.push(BINDING.S);
    decl.push(`@group(0) @binding(${BINDING.S}) var<storage, read_write> S: array<f32>;`);
  }

  const hoisted = loopInvariantNodes(outputs);
  const prologue = emitBody(hoisted, wgsl);
  const declared = new Set(hoisted.map((h) => h.id));
  const fwd = emitBody([...graphs.next, graphs.stage], wgsl, declared);
  const term = emitBody([graphs.terminal, ...(kind === 'grad' ? graphs.gradTerminal : [])], wgsl, declared);

  const load = (names: string[], arr: string, base: string) => names.map((nm, i) => `${nm} = ${arr}[${base} + ${i}u];`).join(' ');
  const store = (names: string[], arr: string, base: string) => names.map((nm, i) => `${arr}[${base} + ${i}u] = ${nm};`).join(' ');
  const loadTape = (base: string) => xs.map((nm, i) => `${nm} = ${io.tape(`${base} + ${i}u`)};`).join(' ');
  const storeTape = (base: string) => xs.map((nm, i) => `${io.tape(`${base} + ${i}u`)} = ${nm};`).join(' ');
  const loadControls = (o: string) => us.map((nm, j) => `${nm} = ${io.control(o, j)};`).join(' ');
  const ctxAt = io.context;

  const L: string[] = as ? [] : [...decl, ''];
  if (as) L.push(`fn ${as.functionName}(s: u32) -> f32 {`);
  else L.push(`@compute @workgroup_size(${WORKGROUP_SIZE})`, 'fn main(@builtin(global_invocation_id) gid: vec3<u32>) {', 'let s = gid.x;', 'if (s >= u32(ctx[0u])) { return; }');
  L.push(indexedNames('r', n).map((r, i) => `let ${r} = ${ctxAt(1 + n + m + i)};`).join(' '));
  L.push(...prologue.code);
  L.push(vars(xs, (i) => ctxAt(1 + i)), vars(ps, (i) => ctxAt(1 + n + i)), vars(us, () => '0.0'), vars(ws, () => '0.0'));
  if (kind === 'grad') L.push(vars(adj, () => '0.0'));
  L.push('var acc: f32 = 0.0;');
  L.push(`for (var t: u32 = 0u; t < ${T}u; t = t + 1u) {`);
  L.push(`let o = s * ${T * m}u + t * ${m}u;`);
  if (usesNoise) L.push(`let ow = s * ${T * k}u + t * ${k}u;`, load(ws, 'W', 'ow'));
  if (usesS) L.push(storeTape(`s * ${(T + 1) * n}u + t * ${n}u`));
  if (kind === 'trajectory' && usesA) L.push(store(xs, 'A', `s * ${(T + 1) * n}u + t * ${n}u`));
  L.push(loadControls('o'));
  L.push(...fwd.code);
  L.push(`acc = acc + ${fwd.refs[n]};`);
  if (n) L.push(assignAll(xs, fwd.refs.slice(0, n), 'nx'));
  L.push(ps.map((pn, i) => `${pn} = ${us[i]};`).join(' '));
  L.push('}');
  if (kind === 'trajectory' && usesA) L.push(store(xs, 'A', `s * ${(T + 1) * n}u + ${T * n}u`));
  L.push('var cost: f32;', '{', ...term.code, `cost = acc + ${term.refs[0]};`);
  if (kind === 'grad') L.push(adj.map((an, i) => `${an} = ${term.refs[1 + i]};`).join(' '));
  L.push('}');
  if (!as) L.push('C[s] = cost;');

  if (kind === 'grad') {
    const qs = indexedNames('q', m);
    const back = emitBody([...graphs.gradX, ...graphs.gradU, ...graphs.gradPrev], wgsl, declared);
    const gx = back.refs.slice(0, n);
    const gu = back.refs.slice(n, n + m);
    const gp = back.refs.slice(n + m);
    L.push(vars(qs, () => '0.0'));
    L.push(`for (var tt: i32 = ${T - 1}; tt >= 0; tt = tt - 1) {`);
    L.push('let t = u32(tt);', `let o = s * ${T * m}u + t * ${m}u;`);
    if (usesNoise) L.push(`let ow = s * ${T * k}u + t * ${k}u;`, load(ws, 'W', 'ow'));
    if (usesS) L.push(loadTape(`s * ${(T + 1) * n}u + t * ${n}u`));
    L.push(loadControls('o'));
    L.push(`if (t > 0u) { ${ps.map((pn, j) => `${pn} = ${io.control(`o - ${m}u`, j)};`).join(' ')} } else { ${ps.map((pn, i) => `${pn} = ${ctxAt(1 + n + i)};`).join(' ')} }`);
    L.push(...back.code);
    L.push(us.map((_, j) => io.storeGrad('o', j, `${gu[j]} + ${qs[j]}`)).join(' '));
    L.push(assignAll(qs, gp, 'nq'));
    if (n) L.push(assignAll(adj, gx, 'na'));
    L.push('}');
  }
  if (as) L.push('return cost;');
  L.push('}');
  return { code: L.filter((l) => l.trim() !== '').join('\n'), bindings };
}
