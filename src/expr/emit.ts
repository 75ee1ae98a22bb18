import { Expr, Scalar } from './expr.js';
import { reachable } from './grad.js';

/** How one target language spells literals, temporaries and operations. */
export interface Dialect {
  literal(v: number): string;
  declare(name: string, value: string): string;
  apply(op: Expr['op'], args: string[]): string;
}

function finiteOrThrow(v: number): number {
  if (!Number.isFinite(v)) throw new Error(`model produced a non-finite constant (${v}); check its parameters`);
  return v;
}

export const javascript: Dialect = {
  literal(v) {
    const s = String(finiteOrThrow(v));
    return v < 0 || Object.is(v, -0) ? `(${s})` : s;
  },
  declare: (name, value) => `const ${name} = ${value};`,
  apply(op, [a, b, c]) {
    switch (op) {
      case 'add': return `(${a} + ${b})`;
      case 'sub': return `(${a} - ${b})`;
      case 'mul': return `(${a} * ${b})`;
      case 'div': return `(${a} / ${b})`;
      case 'neg': return `(-${a})`;
      case 'min': return `Math.min(${a}, ${b})`;
      case 'max': return `Math.max(${a}, ${b})`;
      case 'gt': return `(${a} > ${b} ? 1 : 0)`;
      case 'clamp': return `Math.min(${c}, Math.max(${b}, ${a}))`;
      case 'inside': return `((${a} > ${b} && ${a} < ${c}) ? 1 : 0)`;
      case 'sin': case 'cos': case 'asin': case 'sqrt': case 'exp': case 'log': case 'tanh': case 'abs':
        return `Math.${op}(${a})`;
      case 'atan2': return `Math.atan2(${a}, ${b})`;
      default: throw new Error(`internal: ${op} is not an operation`);
    }
  },
};

export const wgsl: Dialect = {
  literal(v) {
    const f = Math.fround(finiteOrThrow(v));
    let s = String(Math.abs(f));
    if (!/[.e]/.test(s)) s += '.0';
    return f < 0 ? `(-${s})` : s;
  },
  declare: (name, value) => `let ${name} = ${value};`,
  apply(op, [a, b, c]) {
    switch (op) {
      case 'add': return `(${a} + ${b})`;
      case 'sub': return `(${a} - ${b})`;
      case 'mul': return `(${a} * ${b})`;
      case 'div': return `(${a} / ${b})`;
      case 'neg': return `(-${a})`;
      case 'min': case 'max': case 'atan2': return `${op}(${a}, ${b})`;
      case 'gt': return `select(0.0, 1.0, ${a} > ${b})`;
      case 'clamp': return `clamp(${a}, ${b}, ${c})`;
      case 'inside': return `select(0.0, 1.0, ${a} > ${b} && ${a} < ${c})`;
      // f32 tanh may overflow to NaN for large arguments; it is ±1 to f32 precision beyond 15.
      case 'tanh': return `tanh(clamp(${a}, -15.0, 15.0))`;
      case 'sin': case 'cos': case 'asin': case 'sqrt': case 'exp': case 'log': case 'abs':
        return `${op}(${a})`;
      default: throw new Error(`internal: ${op} is not an operation`);
    }
  },
};

/** The names `prefix0 .. prefix{count-1}`: how a graph's inputs (`Graph.inputs`) and the generated code's own per-index variables are spelled. */
export const indexedNames = (prefix: string, count: number): string[] => Array.from({ length: count }, (_, i) => `${prefix}${i}`);

/**
 * Straight-line code computing `outputs`. Inputs are referred to by their
 * names (the caller declares them); temporaries are `v<id>`, unique per graph,
 * so several bodies from one graph can share a scope; nodes in
 * `alreadyDeclared` (hoisted out of a loop) are referred to, not recomputed. Returns the statements
 * and an expression string for each output.
 */
export function emitBody(
  outputs: readonly Scalar[],
  dialect: Dialect,
  alreadyDeclared: ReadonlySet<number> = new Set(),
): { code: string[]; refs: string[] } {
  const ref = (e: Scalar): string => {
    if (typeof e === 'number') return dialect.literal(e);
    if (e.op === 'const') return dialect.literal(e.value);
    if (e.op === 'input') return e.name;
    return `v${e.id}`;
  };
  const code: string[] = [];
  for (const n of reachable(outputs)) {
    if (n.op === 'const' || n.op === 'input' || alreadyDeclared.has(n.id)) continue;
    code.push(dialect.declare(`v${n.id}`, dialect.apply(n.op, n.args.map(ref))));
  }
  return { code, refs: outputs.map(ref) };
}
