import { emitBody, wgsl } from '../expr/emit.js';
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

const list = (prefix: string, count: number) => Array.from({ length: count }, (_, i) => `${prefix}${i}`);
const vars = (names: string[], init: (i: number) => string) => names.map((nm, i) => `var ${nm}: f32 = ${init(i)};`).join(' ');
const assignAll = (names: string[], values: string[], tmp: string) =>
  names.map((_, i) => `let ${tmp}${i} = ${values[i]};`).join(' ') + ' ' + names.map((nm, i) => `${nm} = ${tmp}${i};`).join(' ');

/**
 * One WGSL compute shader per kernel kind: one invocation per sample, the
 * same step graphs as the CPU kernels, in f32. The context buffer holds
 * [M, x0 (n), uPrev (m), reference (n)]; layouts otherwise match the CPU kernels.
 */
export function wgslKernelSource(graphs: StepGraphs, kind: KernelKind): WgslKernel {
  const { model, noise } = graphs;
  const { stateDim: n, controlDim: m, noiseDim: k, horizon: T } = model;
  const xs = list('x', n);
  const us = list('u', m);
  const ps = list('p', m);
  const as = list('a', n);
  const outputs: Scalar[] = [graphs.next, graphs.stage, graphs.terminal].flat();
  if (kind === 'grad') outputs.push(...graphs.gradX, ...graphs.gradU, ...graphs.gradPrev, ...graphs.gradTerminal);
  const usesNoise = noise && readsInput(outputs, 'w');
  const ws = list('w', usesNoise ? k : 0);
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
  const ctxAt = (offset: number) => `ctx[${offset}u]`;

  const L: string[] = [...decl, ''];
  L.push(`@compute @workgroup_size(${WORKGROUP_SIZE})`, 'fn main(@builtin(global_invocation_id) gid: vec3<u32>) {');
  L.push('let s = gid.x;', 'if (s >= u32(ctx[0u])) { return; }');
  L.push(list('r', n).map((r, i) => `let ${r} = ${ctxAt(1 + n + m + i)};`).join(' '));
  L.push(...prologue.code);
  L.push(vars(xs, (i) => ctxAt(1 + i)), vars(ps, (i) => ctxAt(1 + n + i)), vars(us, () => '0.0'), vars(ws, () => '0.0'));
  if (kind === 'grad') L.push(vars(as, () => '0.0'));
  L.push('var acc: f32 = 0.0;');
  L.push(`for (var t: u32 = 0u; t < ${T}u; t = t + 1u) {`);
  L.push(`let o = s * ${T * m}u + t * ${m}u;`);
  if (usesNoise) L.push(`let ow = s * ${T * k}u + t * ${k}u;`, load(ws, 'W', 'ow'));
  if (usesS) L.push(store(xs, 'S', `s * ${(T + 1) * n}u + t * ${n}u`));
  if (kind === 'trajectory' && usesA) L.push(store(xs, 'A', `s * ${(T + 1) * n}u + t * ${n}u`));
  L.push(load(us, 'U', 'o'));
  L.push(...fwd.code);
  L.push(`acc = acc + ${fwd.refs[n]};`);
  if (n) L.push(assignAll(xs, fwd.refs.slice(0, n), 'nx'));
  L.push(ps.map((pn, i) => `${pn} = ${us[i]};`).join(' '));
  L.push('}');
  if (kind === 'trajectory' && usesA) L.push(store(xs, 'A', `s * ${(T + 1) * n}u + ${T * n}u`));
  L.push('{', ...term.code, `C[s] = acc + ${term.refs[0]};`);
  if (kind === 'grad') L.push(as.map((an, i) => `${an} = ${term.refs[1 + i]};`).join(' '));
  L.push('}');

  if (kind === 'grad') {
    const qs = list('q', m);
    const back = emitBody([...graphs.gradX, ...graphs.gradU, ...graphs.gradPrev], wgsl, declared);
    const gx = back.refs.slice(0, n);
    const gu = back.refs.slice(n, n + m);
    const gp = back.refs.slice(n + m);
    L.push(vars(qs, () => '0.0'));
    L.push(`for (var tt: i32 = ${T - 1}; tt >= 0; tt = tt - 1) {`);
    L.push('let t = u32(tt);', `let o = s * ${T * m}u + t * ${m}u;`);
    if (usesNoise) L.push(`let ow = s * ${T * k}u + t * ${k}u;`, load(ws, 'W', 'ow'));
    if (usesS) L.push(load(xs, 'S', `s * ${(T + 1) * n}u + t * ${n}u`));
    L.push(load(us, 'U', 'o'));
    L.push(`if (t > 0u) { ${load(ps, 'U', `o - ${m}u`)} } else { ${ps.map((pn, i) => `${pn} = ${ctxAt(1 + n + i)};`).join(' ')} }`);
    L.push(...back.code);
    L.push(us.map((_, j) => `A[o + ${j}u] = ${gu[j]} + ${qs[j]};`).join(' '));
    L.push(assignAll(qs, gp, 'nq'));
    if (n) L.push(assignAll(as, gx, 'na'));
    L.push('}');
  }
  L.push('}');
  return { code: L.filter((l) => l.trim() !== '').join('\n'), bindings };
}
