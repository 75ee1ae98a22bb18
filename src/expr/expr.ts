/**
 * A tiny scalar expression graph. Models are written once against these
 * operations; kernels for the CPU (f64 JavaScript) and the GPU (f32 WGSL),
 * and exact reverse-mode gradients, are all generated from the same graph.
 *
 * Plain numbers are folded eagerly, so parameters baked into a model cost
 * nothing at run time, and structurally equal nodes are shared (hash-consed),
 * which gives common-subexpression elimination for free.
 */

export type UnaryOp = 'neg' | 'sin' | 'cos' | 'asin' | 'sqrt' | 'exp' | 'log' | 'tanh' | 'abs';
export type BinaryOp = 'add' | 'sub' | 'mul' | 'div' | 'min' | 'max' | 'atan2' | 'gt';
/** clamp(a, lo, hi); inside(a, lo, hi) is 1 where lo < a < hi and 0 elsewhere (the clamp's derivative). */
export type TernaryOp = 'clamp' | 'inside';
export type Op = 'const' | 'input' | UnaryOp | BinaryOp | TernaryOp;

export class Expr {
  constructor(
    readonly graph: Graph,
    readonly id: number,
    readonly op: Op,
    readonly args: readonly Expr[],
    /** constant value (op 'const') */
    readonly value = 0,
    /** input name (op 'input') */
    readonly name = '',
  ) {}
}

export type Scalar = Expr | number;

export class Graph {
  readonly nodes: Expr[] = [];
  private readonly interned = new Map<string, Expr>();

  input(name: string): Expr {
    return this.intern('input', [], 0, name);
  }

  inputs(prefix: string, count: number): Expr[] {
    return Array.from({ length: count }, (_, i) => this.input(`${prefix}${i}`));
  }

  constant(value: number): Expr {
    return this.intern('const', [], value);
  }

  intern(op: Op, args: readonly Expr[], value = 0, name = ''): Expr {
    const key = `${op}|${name}|${op === 'const' ? value : ''}|${args.map((a) => a.id).join(',')}`;
    let node = this.interned.get(key);
    if (!node) {
      node = new Expr(this, this.nodes.length, op, args, value, name);
      this.nodes.push(node);
      this.interned.set(key, node);
    }
    return node;
  }
}

function graphOf(...xs: Scalar[]): Graph {
  for (const x of xs) if (typeof x !== 'number') return x.graph;
  throw new Error('internal: no expression among numeric operands');
}

function node(g: Graph, x: Scalar): Expr {
  return typeof x === 'number' ? g.constant(x) : x;
}

const isNum = (x: Scalar): x is number => typeof x === 'number';
const COMMUTATIVE = new Set<Op>(['add', 'mul', 'min', 'max']);

function binary(op: BinaryOp, a: Scalar, b: Scalar): Expr {
  const g = graphOf(a, b);
  let ea = node(g, a);
  let eb = node(g, b);
  if (COMMUTATIVE.has(op) && eb.id < ea.id) [ea, eb] = [eb, ea];
  return g.intern(op, [ea, eb]);
}

export function add(a: Scalar, b: Scalar): Scalar {
  if (isNum(a) && isNum(b)) return a + b;
  if (a === 0) return b;
  if (b === 0) return a;
  return binary('add', a, b);
}

export function sub(a: Scalar, b: Scalar): Scalar {
  if (isNum(a) && isNum(b)) return a - b;
  if (b === 0) return a;
  if (a === 0) return neg(b);
  if (a === b) return 0;
  return binary('sub', a, b);
}

export function mul(a: Scalar, b: Scalar): Scalar {
  if (isNum(a) && isNum(b)) return a * b;
  if (a === 0 || b === 0) return 0;
  if (a === 1) return b;
  if (b === 1) return a;
  if (a === -1) return neg(b);
  if (b === -1) return neg(a);
  return binary('mul', a, b);
}

export function div(a: Scalar, b: Scalar): Scalar {
  if (isNum(a) && isNum(b)) return a / b;
  if (a === 0) return 0;
  if (b === 1) return a;
  if (isNum(b)) return mul(a, 1 / b);
  return binary('div', a, b);
}

export function neg(a: Scalar): Scalar {
  if (isNum(a)) return -a;
  if (a.op === 'neg') return a.args[0];
  return a.graph.intern('neg', [a]);
}

function unary(op: UnaryOp, f: (x: number) => number) {
  return (a: Scalar): Scalar => (isNum(a) ? f(a) : a.graph.intern(op, [a]));
}

export const sin = unary('sin', Math.sin);
export const cos = unary('cos', Math.cos);
export const asin = unary('asin', Math.asin);
export const sqrt = unary('sqrt', Math.sqrt);
export const exp = unary('exp', Math.exp);
export const log = unary('log', Math.log);
export const tanh = unary('tanh', Math.tanh);
export const abs = unary('abs', Math.abs);

export function min(a: Scalar, b: Scalar): Scalar {
  return isNum(a) && isNum(b) ? Math.min(a, b) : binary('min', a, b);
}

export function max(a: Scalar, b: Scalar): Scalar {
  return isNum(a) && isNum(b) ? Math.max(a, b) : binary('max', a, b);
}

export function atan2(y: Scalar, x: Scalar): Scalar {
  return isNum(y) && isNum(x) ? Math.atan2(y, x) : binary('atan2', y, x);
}

/** 1 where a > b, else 0 (a step; its derivative is zero). */
export function gt(a: Scalar, b: Scalar): Scalar {
  return isNum(a) && isNum(b) ? (a > b ? 1 : 0) : binary('gt', a, b);
}

export function clamp(a: Scalar, lo: number, hi: number): Scalar {
  if (isNum(a)) return Math.min(hi, Math.max(lo, a));
  return a.graph.intern('clamp', [a, node(a.graph, lo), node(a.graph, hi)]);
}

export function inside(a: Scalar, lo: number, hi: number): Scalar {
  if (isNum(a)) return a > lo && a < hi ? 1 : 0;
  return a.graph.intern('inside', [a, node(a.graph, lo), node(a.graph, hi)]);
}

// Conveniences built from the primitives above.

export const sq = (a: Scalar): Scalar => mul(a, a);

export function sum(xs: readonly Scalar[]): Scalar {
  return xs.reduce<Scalar>((acc, x) => add(acc, x), 0);
}

export function dot(a: readonly Scalar[], b: readonly Scalar[]): Scalar {
  return sum(a.map((ai, i) => mul(ai, b[i])));
}

/** sum_i w_i (a_i - b_i)^2 */
export function weightedSquaredError(a: readonly Scalar[], b: readonly Scalar[], w: readonly number[]): Scalar {
  return sum(a.map((ai, i) => mul(w[i], sq(sub(ai, b[i])))));
}

/** Softmax of logits, shifted by their maximum for numerical safety. */
export function softmax(logits: readonly Scalar[]): Scalar[] {
  const top = logits.slice(1).reduce<Scalar>((m, l) => max(m, l), logits[0]);
  const e = logits.map((l) => exp(sub(l, top)));
  const z = sum(e);
  return e.map((ei) => div(ei, z));
}

/** Solves A x = b by Gaussian elimination without pivoting (A symmetric positive definite, e.g. a mass matrix). */
export function solveSpd(A: readonly (readonly Scalar[])[], b: readonly Scalar[]): Scalar[] {
  const n = b.length;
  const a = A.map((row) => [...row]);
  const r = [...b];
  for (let k = 0; k < n; k++) {
    for (let i = k + 1; i < n; i++) {
      const f = div(a[i][k], a[k][k]);
      for (let j = k; j < n; j++) a[i][j] = sub(a[i][j], mul(f, a[k][j]));
      r[i] = sub(r[i], mul(f, r[k]));
    }
  }
  const x: Scalar[] = new Array(n).fill(0);
  for (let i = n - 1; i >= 0; i--) {
    let s = r[i];
    for (let j = i + 1; j < n; j++) s = sub(s, mul(a[i][j], x[j]));
    x[i] = div(s, a[i][i]);
  }
  return x;
}

/** One classical Runge–Kutta step of dx/dt = f(x). */
export function rk4(f: (x: Scalar[]) => Scalar[], x: readonly Scalar[], dtS: number): Scalar[] {
  f = derivativeOfSize(f, x.length, 'rk4');
  const shift = (k: Scalar[], h: number) => x.map((xi, i) => add(xi, mul(h, k[i])));
  const k1 = f([...x]);
  const k2 = f(shift(k1, dtS / 2));
  const k3 = f(shift(k2, dtS / 2));
  const k4 = f(shift(k3, dtS));
  return x.map((xi, i) => add(xi, mul(dtS / 6, add(add(k1[i], mul(2, k2[i])), add(mul(2, k3[i]), k4[i])))));
}

/** One explicit Euler step of dx/dt = f(x): first order; for stiff or fast models prefer rk4 or a finer dtS. */
export function euler(f: (x: Scalar[]) => Scalar[], x: readonly Scalar[], dtS: number): Scalar[] {
  const k = derivativeOfSize(f, x.length, 'euler')([...x]);
  return x.map((xi, i) => add(xi, mul(dtS, k[i])));
}

/**
 * One semi-implicit (symplectic) Euler step of a mechanical system whose state
 * is [q, dq] (positions first, nq of them): the rates step first and the
 * positions move with the new rates, which keeps energy bounded where
 * explicit Euler gains it.
 */
export function semiImplicitEuler(f: (x: Scalar[]) => Scalar[], x: readonly Scalar[], dtS: number, nq: number): Scalar[] {
  if (!(Number.isInteger(nq) && nq >= 0 && 2 * nq === x.length)) throw new Error(`semiImplicitEuler: the state [q, dq] has ${x.length} entries, so nq must be ${x.length / 2}, got ${nq}`);
  const k = derivativeOfSize(f, x.length, 'semiImplicitEuler')([...x]);
  const dq = x.slice(nq).map((v, i) => add(v, mul(dtS, k[nq + i])));
  return [...x.slice(0, nq).map((q, i) => add(q, mul(dtS, dq[i]))), ...dq];
}

/** A derivative that must give one rate per state: a model's mistake is named here, not as an undefined deep in the graph. */
function derivativeOfSize(f: (x: Scalar[]) => Scalar[], n: number, integrator: string): (x: Scalar[]) => Scalar[] {
  return (x) => {
    const k = f(x);
    if (!Array.isArray(k) || k.length !== n) throw new Error(`${integrator}: the derivative gave ${Array.isArray(k) ? k.length : typeof k} values for ${n} states`);
    return k;
  };
}
