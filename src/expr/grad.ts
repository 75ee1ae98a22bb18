import {
  add, cos, div, Expr, gt, inside, max, mul, neg, Scalar, sin, sqrt, sub,
} from './expr.js';

/** Nodes reachable from the outputs, in increasing id order (a topological order). */
export function reachable(outputs: readonly Scalar[]): Expr[] {
  const seen = new Set<number>();
  const found: Expr[] = [];
  const stack: Expr[] = outputs.filter((o): o is Expr => typeof o !== 'number');
  while (stack.length) {
    const e = stack.pop()!;
    if (seen.has(e.id)) continue;
    seen.add(e.id);
    found.push(e);
    for (const a of e.args) if (!seen.has(a.id)) stack.push(a);
  }
  return found.sort((a, b) => a.id - b.id);
}

// Keeps asin's derivative finite where its argument was clamped to ±1.
const ASIN_GUARD = 1e-12;

/**
 * Reverse-mode derivative of `out` with respect to each of `wrt`, as new
 * expressions in the same graph. Zero adjoints stay the number 0 and prune.
 */
export function gradient(out: Scalar, wrt: readonly Expr[]): Scalar[] {
  if (typeof out === 'number') return wrt.map(() => 0);
  const adjoint = new Map<number, Scalar>([[out.id, 1]]);
  const push = (target: Expr, contribution: Scalar) => {
    if (target.op === 'const' || contribution === 0) return;
    adjoint.set(target.id, add(adjoint.get(target.id) ?? 0, contribution));
  };
  const order = reachable([out]).reverse();
  for (const n of order) {
    const g = adjoint.get(n.id);
    if (g === undefined || g === 0) continue;
    const [a, b, c] = n.args;
    switch (n.op) {
      case 'const':
      case 'input':
      case 'gt':
      case 'inside':
        break;
      case 'add':
        push(a, g);
        push(b, g);
        break;
      case 'sub':
        push(a, g);
        push(b, neg(g));
        break;
      case 'mul':
        push(a, mul(g, b));
        push(b, mul(g, a));
        break;
      case 'div': {
        // one reciprocal shared by both partials: divisions cost several multiplies
        const inv = div(1, b);
        push(a, mul(g, inv));
        push(b, neg(mul(mul(g, n), inv)));
        break;
      }
      case 'neg':
        push(a, neg(g));
        break;
      case 'sin':
        push(a, mul(g, cos(a)));
        break;
      case 'cos':
        push(a, neg(mul(g, sin(a))));
        break;
      case 'asin':
        push(a, div(g, sqrt(max(sub(1, mul(a, a)), ASIN_GUARD))));
        break;
      case 'sqrt':
        push(a, div(mul(0.5, g), n));
        break;
      case 'exp':
        push(a, mul(g, n));
        break;
      case 'log':
        push(a, div(g, a));
        break;
      case 'tanh':
        push(a, mul(g, sub(1, mul(n, n))));
        break;
      case 'abs':
        // sign(a) = 2 [a > 0] - 1, away from a = 0
        push(a, mul(g, sub(mul(2, gt(a, 0)), 1)));
        break;
      case 'min': {
        const takeA = gt(b, a);
        push(a, mul(g, takeA));
        push(b, mul(g, sub(1, takeA)));
        break;
      }
      case 'max': {
        const takeA = gt(a, b);
        push(a, mul(g, takeA));
        push(b, mul(g, sub(1, takeA)));
        break;
      }
      case 'atan2': {
        // n = atan2(y=a, x=b): d/dy = x/r², d/dx = -y/r²
        const r2 = add(mul(a, a), mul(b, b));
        push(a, mul(g, div(b, r2)));
        push(b, neg(mul(g, div(a, r2))));
        break;
      }
      case 'clamp':
        push(a, mul(g, inside(a, (b as Expr).value, (c as Expr).value)));
        break;
      default: {
        const unknown: never = n.op;
        throw new Error(`internal: no derivative rule for ${String(unknown)}`);
      }
    }
  }
  return wrt.map((w) => adjoint.get(w.id) ?? 0);
}
