import type { Expr, Scalar } from '../expr/expr.js';
import { reachable } from '../expr/grad.js';
import { loopInvariantNodes, StepGraphs, tapeNodes } from './graphs.js';
import type { KernelKind } from './js-source.js';

/**
 * The CPU rollout kernels as WebAssembly with 128-bit SIMD: the same step
 * graphs as the JavaScript kernels (`js-source.ts`, the reference), emitted
 * as straight-line f64x2 code that advances two samples at once, one per
 * lane. Why: a rollout is hundreds of dependent arithmetic operations per
 * step; V8's optimised JavaScript runs them one f64 at a time and checks
 * every typed-array access, while the lanes here halve the instruction
 * count and linear memory needs no bounds checks. The arithmetic is IEEE
 * f64 in both, operation for operation; sin and cos are vectorised here
 * (within an ulp or two of the host's), sin/cos of a sum of two angles come
 * by angle addition, and the rarer functions (exp, log, tanh, asin, atan2)
 * are the host's own Math functions called per lane. So costs agree with the
 * reference to about 1e-15 and gradients through chaotic rollouts to about
 * 1e-11 (test/wasm-kernels.test.ts).
 *
 * The kernel's source is JavaScript, like the reference's: it carries the
 * module's bytes and a wrapper with the CpuKernel signature that copies a
 * chunk of samples into the instance's memory, interleaved by lane, runs it
 * and copies the results out. So the worker pool runs either kind unchanged.
 */

// ---------------------------------------------------------------- encoding

const I32 = 0x7f;
const F64 = 0x7c;
const V128 = 0x7b;

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}

function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && !(b & 0x40)) || (n === -1 && b & 0x40)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

const utf8 = (s: string) => [...uleb(Buffer.byteLength(s)), ...Buffer.from(s)];
const vec = (items: number[][]) => [...uleb(items.length), ...items.flat()];
const section = (id: number, body: number[]) => [id, ...uleb(body.length), ...body];

function f64Bytes(v: number): number[] {
  const b = Buffer.alloc(8);
  b.writeDoubleLE(v);
  return [...b];
}

const OP = {
  block: 0x02, loop: 0x03, if: 0x04, else: 0x05, end: 0x0b, br: 0x0c, brIf: 0x0d, call: 0x10,
  localGet: 0x20, localSet: 0x21, localTee: 0x22,
  f64Load: 0x2b, f64Store: 0x39, i32Const: 0x41, f64Const: 0x44,
  i32Eqz: 0x45, i32GeS: 0x4e, i32GtS: 0x4a, i32Add: 0x6a, i32Sub: 0x6b,
} as const;

// SIMD instructions (prefix 0xfd, then the LEB128 opcode).
const SIMD = {
  load: 0x00, store: 0x0b, const: 0x0c, splat: 0x14, extract: 0x21, replace: 0x22,
  eq: 0x47, lt: 0x49, gt: 0x4a, ge: 0x4c, and: 0x4e, or: 0x50, xor: 0x51, bitselect: 0x52,
  floor: 0x75, nearest: 0x94,
  abs: 0xec, neg: 0xed, sqrt: 0xef, add: 0xf0, sub: 0xf1, mul: 0xf2, div: 0xf3, min: 0xf4, max: 0xf5,
} as const;

/** Host functions a graph may call, per lane: (f64) -> f64, or (f64, f64) -> f64 for atan2. */
const HOST_UNARY = ['asin', 'exp', 'log', 'tanh'] as const;

class Body {
  readonly code: number[] = [];
  op(...bytes: number[]): this {
    this.code.push(...bytes);
    return this;
  }
  simd(opcode: number, ...immediates: number[]): this {
    return this.op(0xfd, ...uleb(opcode), ...immediates);
  }
  get(local: number): this {
    return this.op(OP.localGet, ...uleb(local));
  }
  set(local: number): this {
    return this.op(OP.localSet, ...uleb(local));
  }
  i32(v: number): this {
    return this.op(OP.i32Const, ...sleb(v));
  }
  /** v128.load/store with a static byte offset from the address on the stack */
  load(offsetBytes: number): this {
    return this.simd(SIMD.load, 4, ...uleb(offsetBytes));
  }
  store(offsetBytes: number): this {
    return this.simd(SIMD.store, 4, ...uleb(offsetBytes));
  }
  splatConst(v: number): this {
    return this.simd(SIMD.const, ...f64Bytes(v), ...f64Bytes(v));
  }
  /** for (counter = from; counter != to; counter += step) { body } over i32 values */
  countedLoop(counter: number, from: number, to: () => void, step: number, body: () => void): this {
    this.i32(from).set(counter);
    this.op(OP.block, 0x40, OP.loop, 0x40);
    this.get(counter);
    to();
    this.op(0x46 /* i32.eq */, OP.brIf, 1);
    body();
    this.get(counter).i32(step).op(OP.i32Add).set(counter);
    this.op(OP.br, 0, OP.end, OP.end);
    return this;
  }
}

// ---------------------------------------------------------------- locals

/** v128 locals: fixed ones (inputs, hoisted values), and temporaries reused once their last reader has run. */
class Locals {
  private count = 0;
  private readonly free: number[] = [];
  /** the local holding each computed node, by node id */
  readonly at = new Map<number, number>();
  constructor(readonly firstV128: number) {}
  fresh(): number {
    return this.firstV128 + this.count++;
  }
  take(): number {
    return this.free.pop() ?? this.fresh();
  }
  release(local: number): void {
    this.free.push(local);
  }
  get total(): number {
    return this.count;
  }
}

interface Emitter {
  body: Body;
  locals: Locals;
  /** local holding each input by name (x0, u0, p0, r0, w0, a0) */
  inputs: Map<string, number>;
  hostIndex: Map<string, number>;
  /** ids of the arguments the body being emitted takes sin or cos of */
  trigArgs: Set<number>;
  /** sin and cos of an argument, computed together, by argument id; kept for the whole body */
  sincos: Map<number, { sin: number; cos: number }>;
  /** locals of `sincos`, released when the body ends */
  sincosLocals: number[];
}

/** Pushes a value (constant, input or computed node) onto the stack. */
function push(e: Emitter, s: Scalar): void {
  if (typeof s === 'number') return void e.body.splatConst(s);
  if (s.op === 'const') return void e.body.splatConst(s.value);
  if (s.op === 'input') {
    const l = e.inputs.get(s.name);
    if (l === undefined) throw new Error(`internal: input ${s.name} has no local`);
    return void e.body.get(l);
  }
  const l = e.locals.at.get(s.id);
  if (l === undefined) throw new Error(`internal: node v${s.id} read before it was computed`);
  e.body.get(l);
}

/** Calls a host function on each lane of the values on the stack (one or two operands, held in scratch locals). */
function perLane(e: Emitter, fn: string, args: Expr[]): void {
  const { body } = e;
  const f = e.hostIndex.get(fn);
  if (f === undefined) throw new Error(`internal: host function ${fn} not imported`);
  for (let lane = 0; lane < 2; lane++) {
    for (const a of args) {
      push(e, a);
      body.simd(SIMD.extract, lane);
    }
    body.op(OP.call, ...uleb(f));
    if (lane === 0) body.simd(SIMD.splat);
    else body.simd(SIMD.replace, 1);
  }
}

// fdlibm's Cody-Waite split of pi/2 (33 bits each) and its sin/cos kernels on [-pi/4, pi/4]
const PIO2 = [1.57079632673412561417e+00, 6.07710050630396597660e-11, 2.02226624871116645580e-21];
const SIN = [-1.66666666666666324348e-01, 8.33333333332248946124e-03, -1.98412698298579493134e-04, 2.75573137070700676789e-06, -2.50507602534068634195e-08, 1.58969099521155010221e-10];
const COS = [4.16666666666666019037e-02, -1.38888888888741095749e-03, 2.48015872894767294178e-05, -2.75573143513906633035e-07, 2.08757232129817482790e-09, -1.13596475577881948265e-11];

/**
 * sin and cos of a value on both lanes: x = k pi/2 + r with |r| <= pi/4,
 * fdlibm's polynomials on r, the quadrant k mod 4 choosing and signing them.
 * Within an ulp or two of the host's Math.sin/cos for |x| < 1e6 (the
 * reduction is exact there); NaN and infinities give NaN, as the host's do.
 * One reduction serves both when a graph takes sin and cos of one angle, as
 * every rotation does.
 */
function sinCos(e: Emitter, arg: Expr): { sin: number; cos: number } {
  const { body, locals } = e;
  const k = locals.take(), r = locals.take(), z = locals.take(), sr = locals.take(), cr = locals.take(), odd = locals.take(), q = locals.take();
  push(e, arg);
  body.splatConst(2 / Math.PI).simd(SIMD.mul).simd(SIMD.nearest).set(k);
  push(e, arg);
  for (const part of PIO2) body.get(k).splatConst(part).simd(SIMD.mul).simd(SIMD.sub);
  body.set(r);
  body.get(r).get(r).simd(SIMD.mul).set(z);
  const horner = (coefficients: number[]) => {
    body.splatConst(coefficients[coefficients.length - 1]);
    for (let i = coefficients.length - 2; i >= 0; i--) body.get(z).simd(SIMD.mul).splatConst(coefficients[i]).simd(SIMD.add);
  };
  // sin r = r + r^3 (S1 + z (S2 + ...))
  body.get(r);
  body.get(z).get(r).simd(SIMD.mul);
  horner(SIN);
  body.simd(SIMD.mul).simd(SIMD.add).set(sr);
  // cos r = w + (((1 - w) - z/2) + z^2 (C1 + z (C2 + ...))), w = 1 - z/2
  const w = locals.take();
  body.splatConst(1).get(z).splatConst(0.5).simd(SIMD.mul).simd(SIMD.sub).set(w);
  body.get(w);
  body.splatConst(1).get(w).simd(SIMD.sub).get(z).splatConst(0.5).simd(SIMD.mul).simd(SIMD.sub);
  body.get(z).get(z).simd(SIMD.mul);
  horner(COS);
  body.simd(SIMD.mul).simd(SIMD.add).simd(SIMD.add).set(cr);
  locals.release(w);
  // quadrant q = k mod 4 in 0..3; odd quadrants swap sin and cos
  body.get(k).get(k).splatConst(0.25).simd(SIMD.mul).simd(SIMD.floor).splatConst(4).simd(SIMD.mul).simd(SIMD.sub).set(q);
  const eqQ = (v: number) => body.get(q).splatConst(v).simd(SIMD.eq);
  eqQ(1);
  eqQ(3);
  body.simd(SIMD.or).set(odd);
  const out = { sin: locals.take(), cos: locals.take() };
  // sin x = (q odd ? cos r : sin r), negated for q >= 2
  body.get(cr).get(sr).get(odd).simd(SIMD.bitselect);
  body.get(q).splatConst(2).simd(SIMD.ge).splatConst(-0).simd(SIMD.and).simd(SIMD.xor).set(out.sin);
  // cos x = (q odd ? sin r : cos r), negated for q = 1, 2
  body.get(sr).get(cr).get(odd).simd(SIMD.bitselect);
  eqQ(1);
  eqQ(2);
  body.simd(SIMD.or).splatConst(-0).simd(SIMD.and).simd(SIMD.xor).set(out.cos);
  for (const l of [k, r, z, sr, cr, odd, q]) locals.release(l);
  return out;
}

/**
 * sin and cos of an argument, from the body's cache or computed now. The sum
 * or difference of two angles whose own sin or cos the step also takes (the
 * acrobot's q1 + q2) comes from theirs by the angle-addition formulas: four
 * multiplies instead of a third reduction and pair of polynomials.
 */
function sinCosOf(e: Emitter, a: Expr): { sin: number; cos: number } {
  const cached = e.sincos.get(a.id);
  if (cached) return cached;
  const { body, locals } = e;
  let pair: { sin: number; cos: number };
  if ((a.op === 'add' || a.op === 'sub') && a.args.every((x) => e.trigArgs.has(x.id))) {
    const p = sinCosOf(e, a.args[0]);
    const q = sinCosOf(e, a.args[1]);
    const plus = a.op === 'add';
    pair = { sin: locals.take(), cos: locals.take() };
    // sin(p ± q) = sp cq ± cp sq; cos(p ± q) = cp cq ∓ sp sq
    body.get(p.sin).get(q.cos).simd(SIMD.mul).get(p.cos).get(q.sin).simd(SIMD.mul).simd(plus ? SIMD.add : SIMD.sub).set(pair.sin);
    body.get(p.cos).get(q.cos).simd(SIMD.mul).get(p.sin).get(q.sin).simd(SIMD.mul).simd(plus ? SIMD.sub : SIMD.add).set(pair.cos);
  } else {
    pair = sinCos(e, a);
  }
  e.sincos.set(a.id, pair);
  e.sincosLocals.push(pair.sin, pair.cos);
  return pair;
}

/** Computes one node into a fresh local. */
function compute(e: Emitter, n: Expr): void {
  const { body } = e;
  const [a, b, c] = n.args;
  const bin = (opcode: number) => {
    push(e, a);
    push(e, b);
    body.simd(opcode);
  };
  switch (n.op) {
    case 'add': bin(SIMD.add); break;
    case 'sub': bin(SIMD.sub); break;
    case 'mul': bin(SIMD.mul); break;
    case 'div': bin(SIMD.div); break;
    case 'min': bin(SIMD.min); break;
    case 'max': bin(SIMD.max); break;
    case 'neg': push(e, a); body.simd(SIMD.neg); break;
    case 'abs': push(e, a); body.simd(SIMD.abs); break;
    case 'sqrt': push(e, a); body.simd(SIMD.sqrt); break;
    case 'gt': bin(SIMD.gt); body.splatConst(1).simd(SIMD.and); break;
    case 'clamp':
      // Math.min(hi, Math.max(lo, a)), NaN-propagating like the reference
      push(e, c);
      push(e, b);
      push(e, a);
      body.simd(SIMD.max).simd(SIMD.min);
      break;
    case 'inside':
      push(e, a);
      push(e, b);
      body.simd(SIMD.gt);
      push(e, a);
      push(e, c);
      body.simd(SIMD.lt).simd(SIMD.and).splatConst(1).simd(SIMD.and);
      break;
    case 'atan2': perLane(e, 'atan2', [a, b]); break;
    case 'sin': case 'cos': {
      const pair = sinCosOf(e, a);
      e.locals.at.set(n.id, n.op === 'sin' ? pair.sin : pair.cos);
      return;
    }
    case 'asin': case 'exp': case 'log': case 'tanh': perLane(e, n.op, [a]); break;
    default: throw new Error(`internal: ${n.op} is not an operation`);
  }
  const l = e.locals.take();
  e.locals.at.set(n.id, l);
  body.set(l);
}

/**
 * Straight-line code for `outputs` (nodes in `done` are already in locals).
 * Temporaries are released after their last reader; outputs and nodes in
 * `keep` stay in their locals for the caller, who releases them with `release`.
 */
function emitNodes(e: Emitter, outputs: readonly Scalar[], done: ReadonlySet<number>, keep: readonly Scalar[] = []): { release: () => void } {
  const order = reachable(outputs).filter((n) => n.op !== 'const' && n.op !== 'input' && !done.has(n.id));
  const lastUse = new Map<number, number>();
  order.forEach((n, i) => n.args.forEach((a) => lastUse.set(a.id, i)));
  const pinned = new Set([...outputs, ...keep].filter((o): o is Expr => typeof o !== 'number').map((o) => o.id));
  const mine = new Set(order.map((n) => n.id));
  e.trigArgs.clear();
  e.sincos.clear();
  const sincosLocals = (e.sincosLocals = []);
  const isTrig = (x: Expr) => x.op === 'sin' || x.op === 'cos';
  for (const n of order) if (isTrig(n)) e.trigArgs.add(n.args[0].id);
  order.forEach((n, i) => {
    compute(e, n);
    for (const a of new Set(n.args)) {
      // a sin or cos lives in the body's sincos cache until the body ends
      if (mine.has(a.id) && !pinned.has(a.id) && !isTrig(a) && lastUse.get(a.id) === i) e.locals.release(e.locals.at.get(a.id)!);
    }
  });
  return {
    release: () => {
      for (const n of order) if (pinned.has(n.id) && !isTrig(n)) e.locals.release(e.locals.at.get(n.id)!);
      for (const l of sincosLocals) e.locals.release(l);
      for (const n of order) e.locals.at.delete(n.id);
    },
  };
}

// ---------------------------------------------------------------- kernel

/** Parameters of the exported `run` function: the pair count, then byte addresses of the regions. */
const P = { pairs: 0, u: 1, w: 2, c: 3, a: 4, s: 5 } as const;
const PARAMS = 6;
/** i32 locals after the parameters */
const I = { t: PARAMS, pair: PARAMS + 1, uRow: PARAMS + 2, wRow: PARAMS + 3, stRow: PARAMS + 4, tpRow: PARAMS + 5, aRow: PARAMS + 6 } as const;
const I32_LOCALS = 7;
const V = 16; // bytes per f64x2

/** Doubles (both lanes) per sample pair in each region; scratch is for one pair (pairs run one after another). */
export interface WasmKernelLayout {
  fixed: number; u: number; w: number; a: number; scratch: number;
}

export interface WasmKernelModule {
  bytes: Uint8Array;
  layout: WasmKernelLayout;
  /** host functions imported from Math, in import order */
  hosts: string[];
}

/** The module for one kernel kind and the layout its wrapper fills. */
export function wasmKernelModule(graphs: StepGraphs, kind: KernelKind): WasmKernelModule {
  const { model, noise } = graphs;
  const { stateDim: n, controlDim: m, noiseDim: k, horizon: T } = model;
  const kw = noise ? k : 0;
  const grad = kind === 'grad';

  const forward: Scalar[] = [...graphs.next, graphs.stage];
  const backOutputs = [...graphs.gradX, ...graphs.gradU, ...graphs.gradPrev];
  const terminalOutputs: Scalar[] = [graphs.terminal, ...(grad ? graphs.gradTerminal : [])];
  const allOutputs: Scalar[] = [...forward, ...terminalOutputs, ...(grad ? backOutputs : [])];
  const hoisted = loopInvariantNodes(allOutputs);
  const hoistedIds = new Set(hoisted.map((h) => h.id));
  const tape = grad ? tapeNodes(forward, backOutputs, hoistedIds) : [];

  const used = new Set(reachable(allOutputs).map((x) => x.op));
  const hosts: string[] = [...HOST_UNARY.filter((h) => used.has(h)), ...(used.has('atan2') ? ['atan2'] : [])];
  const hostIndex = new Map(hosts.map((h, i) => [h, i]));

  const locals = new Locals(PARAMS + I32_LOCALS);
  const inputs = new Map<string, number>();
  const declare = (name: string) => inputs.set(name, locals.fresh());
  for (let i = 0; i < n; i++) declare(`x${i}`), declare(`r${i}`);
  for (let j = 0; j < m; j++) declare(`u${j}`), declare(`p${j}`);
  for (let j = 0; j < kw; j++) declare(`w${j}`);
  if (grad) {
    for (let i = 0; i < n; i++) declare(`a${i}`);
    for (let j = 0; j < m; j++) declare(`q${j}`);
  }
  const acc = locals.fresh();
  const body = new Body();
  const e: Emitter = { body, locals, inputs, hostIndex, trigArgs: new Set(), sincos: new Map(), sincosLocals: [] };
  const L = (name: string) => inputs.get(name)!;
  const assign = (targets: number[], values: Scalar[]) => {
    values.forEach((v) => push(e, v));
    for (let i = targets.length - 1; i >= 0; i--) body.set(targets[i]);
  };
  const step = (local: number, bytes: number) => {
    if (bytes) body.get(local).i32(bytes).op(OP.i32Add).set(local);
  };
  const fixedScalar = (index: number) => body.i32(0).op(OP.f64Load, 3, ...uleb(index * 8)).simd(SIMD.splat);

  const layout: WasmKernelLayout = {
    fixed: 2 * n + m + ((2 * n + m) % 2),
    u: T * m * 2,
    w: T * kw * 2,
    a: grad ? T * m * 2 : kind === 'trajectory' ? (T + 1) * n * 2 : 0,
    scratch: grad ? ((T + 1) * n + T * tape.length) * 2 : 0,
  };
  const tapeStart = (T + 1) * n * V; // bytes into scratch

  // Fixed block at byte 0: x0 [n], uPrev [m], reference [n] (the same for every sample).
  for (let i = 0; i < n; i++) fixedScalar(n + m + i).set(L(`r${i}`));
  for (const h of hoisted) compute(e, h); // kept in their locals for the whole call

  const xs = Array.from({ length: n }, (_, i) => L(`x${i}`));
  const us = Array.from({ length: m }, (_, j) => L(`u${j}`));
  const ps = Array.from({ length: m }, (_, j) => L(`p${j}`));
  const as = Array.from({ length: grad ? n : 0 }, (_, i) => L(`a${i}`));
  const qs = Array.from({ length: grad ? m : 0 }, (_, j) => L(`q${j}`));
  const rowOf = (target: number, base: number, perPairDoubles: number, extraBytes = 0) => {
    body.get(base).get(I.pair).i32(perPairDoubles * 8).op(0x6c /* i32.mul */, OP.i32Add);
    if (extraBytes) body.i32(extraBytes).op(OP.i32Add);
    body.set(target);
  };

  body.countedLoop(I.pair, 0, () => body.get(P.pairs), 1, () => {
    xs.forEach((x, i) => fixedScalar(i).set(x));
    ps.forEach((p, j) => fixedScalar(n + j).set(p));
    body.splatConst(0).set(acc);
    rowOf(I.uRow, P.u, layout.u);
    rowOf(I.wRow, P.w, layout.w);
    rowOf(I.aRow, P.a, layout.a);
    body.get(P.s).set(I.stRow);
    body.get(P.s).i32(tapeStart).op(OP.i32Add).set(I.tpRow);

    body.countedLoop(I.t, 0, () => body.i32(T), 1, () => {
      if (grad) xs.forEach((x, i) => body.get(I.stRow).get(x).store(i * V));
      if (kind === 'trajectory') xs.forEach((x, i) => body.get(I.aRow).get(x).store(i * V));
      us.forEach((u, j) => body.get(I.uRow).load(j * V).set(u));
      for (let j = 0; j < kw; j++) body.get(I.wRow).load(j * V).set(L(`w${j}`));
      const fwd = emitNodes(e, forward, hoistedIds, tape);
      tape.forEach((node, j) => {
        body.get(I.tpRow);
        push(e, node);
        body.store(j * V);
      });
      body.get(acc);
      push(e, graphs.stage);
      body.simd(SIMD.add).set(acc);
      assign(xs, graphs.next);
      us.forEach((u, j) => body.get(u).set(ps[j]));
      fwd.release();
      step(I.uRow, m * V);
      step(I.wRow, kw * V);
      step(I.stRow, grad ? n * V : 0);
      step(I.tpRow, tape.length * V);
      if (kind === 'trajectory') step(I.aRow, n * V);
    });
    if (kind === 'trajectory') xs.forEach((x, i) => body.get(I.aRow).get(x).store(i * V));

    const term = emitNodes(e, terminalOutputs, hoistedIds);
    body.get(P.c).get(I.pair).i32(V).op(0x6c, OP.i32Add);
    body.get(acc);
    push(e, graphs.terminal);
    body.simd(SIMD.add).store(0);
    if (grad) {
      assign(as, graphs.gradTerminal);
      qs.forEach((q) => body.splatConst(0).set(q));
    }
    term.release();

    if (grad) {
      // reverse sweep from the last step: rows point at step T-1
      rowOf(I.uRow, P.u, layout.u, (T - 1) * m * V);
      rowOf(I.wRow, P.w, layout.w, (T - 1) * kw * V);
      rowOf(I.aRow, P.a, layout.a, (T - 1) * m * V);
      body.get(P.s).i32((T - 1) * n * V).op(OP.i32Add).set(I.stRow);
      body.get(P.s).i32(tapeStart + (T - 1) * tape.length * V).op(OP.i32Add).set(I.tpRow);
      const tapeIds = new Set(tape.map((t) => t.id));
      body.countedLoop(I.t, T - 1, () => body.i32(-1), -1, () => {
        xs.forEach((x, i) => body.get(I.stRow).load(i * V).set(x));
        us.forEach((u, j) => body.get(I.uRow).load(j * V).set(u));
        for (let j = 0; j < kw; j++) body.get(I.wRow).load(j * V).set(L(`w${j}`));
        if (m) {
          body.get(I.t).op(OP.if, 0x40);
          ps.forEach((p, j) => body.get(I.uRow).i32(m * V).op(OP.i32Sub).load(j * V).set(p));
          body.op(OP.else);
          ps.forEach((p, j) => fixedScalar(n + j).set(p));
          body.op(OP.end);
        }
        const tapeLocals = tape.map((node, j) => {
          const l = locals.take();
          locals.at.set(node.id, l);
          body.get(I.tpRow).load(j * V).set(l);
          return l;
        });
        const back = emitNodes(e, backOutputs, new Set([...hoistedIds, ...tapeIds]));
        const gx = graphs.gradX;
        const gu = graphs.gradU;
        const gp = graphs.gradPrev;
        gu.forEach((g, j) => {
          body.get(I.aRow);
          push(e, g);
          body.get(qs[j]).simd(SIMD.add).store(j * V);
        });
        assign([...qs, ...as], [...gp, ...gx]);
        back.release();
        tapeLocals.forEach((l) => locals.release(l));
        tape.forEach((node) => locals.at.delete(node.id));
        step(I.uRow, -m * V);
        step(I.wRow, -kw * V);
        step(I.aRow, -m * V);
        step(I.stRow, -n * V);
        step(I.tpRow, -tape.length * V);
      });
    }
  });
  body.op(OP.end);

  const types = [
    [0x60, ...vec(Array.from({ length: PARAMS }, () => [I32])), 0],
    [0x60, 1, F64, 1, F64],
    [0x60, 2, F64, F64, 1, F64],
  ];
  const imports = hosts.map((h) => [...utf8('m'), ...utf8(h), 0x00, ...uleb(h === 'atan2' ? 2 : 1)]);
  const localDecls = vec([[...uleb(I32_LOCALS), I32], [...uleb(locals.total), V128]]);
  const fn = [...localDecls, ...body.code];
  const bytes = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec(types)),
    ...section(2, vec(imports)),
    ...section(3, vec([uleb(0)])),
    ...section(5, vec([[0x00, 1]])),
    ...section(7, vec([[...utf8('run'), 0x00, ...uleb(hosts.length)], [...utf8('memory'), 0x02, 0]])),
    ...section(10, vec([[...uleb(fn.length), ...fn]])),
  ];
  return { bytes: Uint8Array.from(bytes), layout, hosts };
}

/**
 * JavaScript source of one kernel (an expression evaluating to a CpuKernel):
 * the module, and a wrapper that copies a chunk of samples in, interleaved
 * two to a vector (an odd chunk repeats its last sample in the spare lane),
 * runs it and copies costs and outputs back.
 */
export function wasmKernelSource(graphs: StepGraphs, kind: KernelKind): string {
  const { bytes, layout, hosts } = wasmKernelModule(graphs, kind);
  const { stateDim: n, controlDim: m, noiseDim: k, horizon: T } = graphs.model;
  const kw = graphs.noise ? k : 0;
  const aPerSample = layout.a / 2;
  return `(function () {
"use strict";
const module = new WebAssembly.Module(Buffer.from(${JSON.stringify(Buffer.from(bytes).toString('base64'))}, 'base64'));
const instance = new WebAssembly.Instance(module, { m: { ${hosts.map((h) => `${h}: Math.${h}`).join(', ')} } });
const run = instance.exports.run;
const memory = instance.exports.memory;
let F = new Float64Array(memory.buffer);
const n = ${n}, m = ${m}, T = ${T}, kw = ${kw}, uPer = ${layout.u}, wPer = ${layout.w}, aPer = ${layout.a}, scratch = ${layout.scratch}, fixed = ${layout.fixed};
const aSample = ${aPerSample}, uSample = T * m, wSample = T * kw;
const interleave = (src, srcStride, s0, count, dst, per) => {
  for (let q = 0; q < count; q++) {
    const from = (s0 + q) * srcStride;
    const to = dst + (q >> 1) * per + (q & 1);
    for (let i = 0; i < srcStride; i++) F[to + 2 * i] = src[from + i];
  }
  if (count & 1) {
    const to = dst + (count >> 1) * per + 1;
    for (let i = 0; i < srcStride; i++) F[to + 2 * i] = F[to - 1 + 2 * i];
  }
};
return function (U, X0, UP, R, W, C, A, S, s0, s1) {
  const count = s1 - s0;
  if (count <= 0) return;
  const pairs = (count + 1) >> 1;
  const u = fixed, w = u + pairs * uPer, c = w + pairs * wPer, a = c + pairs * 2, s = a + pairs * aPer, end = s + scratch;
  if (end * 8 > memory.buffer.byteLength) {
    memory.grow(Math.ceil((end * 8 - memory.buffer.byteLength) / 65536));
    F = new Float64Array(memory.buffer);
  }
  for (let i = 0; i < n; i++) F[i] = X0[i];
  for (let j = 0; j < m; j++) F[n + j] = UP[j];
  for (let i = 0; i < n; i++) F[n + m + i] = R[i];
  interleave(U, uSample, s0, count, u, uPer);
  if (kw) interleave(W, wSample, s0, count, w, wPer);
  run(pairs, u * 8, w * 8, c * 8, a * 8, s * 8);
  for (let q = 0; q < count; q++) {
    const pair = q >> 1, lane = q & 1;
    C[s0 + q] = F[c + 2 * pair + lane];
    if (aSample) {
      const from = a + pair * aPer + lane, to = (s0 + q) * aSample;
      for (let i = 0; i < aSample; i++) A[to + i] = F[from + 2 * i];
    }
  }
};
})()`;
}
