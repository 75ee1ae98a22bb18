import assert from 'node:assert/strict';
import { add, clamp, cos, div, Graph, mul, sin, softmax, sq, sub } from '../src/expr/expr.js';
import { emitBody, javascript } from '../src/expr/emit.js';
import { gradient } from '../src/expr/grad.js';

function evaluate(outputs: ReturnType<typeof add>[], inputs: Record<string, number>): number[] {
  const { code, refs } = emitBody(outputs, javascript);
  const names = Object.keys(inputs);
  const fn = new Function(...names, `${code.join('\n')}\nreturn [${refs.join(', ')}];`);
  return fn(...names.map((n) => inputs[n])) as number[];
}

describe('expression graph', () => {
  it('folds numbers and shares equal subexpressions', () => {
    const g = new Graph();
    const x = g.input('x0');
    assert.equal(add(2, 3), 5);
    assert.equal(mul(x, 1), x);
    assert.equal(mul(x, 0), 0);
    assert.equal(sub(x, x), 0);
    assert.equal(sin(x), sin(x), 'hash-consing returns the same node');
    assert.equal(add(x, sin(x)), add(sin(x), x), 'commutative operands are canonicalised');
  });

  it('differentiates a composite expression exactly', () => {
    const g = new Graph();
    const [x, y] = g.inputs('x', 2);
    const f = add(mul(sin(x), sq(y)), div(cos(y), add(1, sq(x))));
    const [dx, dy] = gradient(f, [x, y]);
    const at = { x0: 0.7, x1: -1.3 };
    const [vdx, vdy] = evaluate([dx, dy], at);
    const X = at.x0;
    const Y = at.x1;
    assert.ok(Math.abs(vdx - (Math.cos(X) * Y * Y - (Math.cos(Y) * 2 * X) / (1 + X * X) ** 2)) < 1e-14);
    assert.ok(Math.abs(vdy - (Math.sin(X) * 2 * Y - Math.sin(Y) / (1 + X * X))) < 1e-14);
  });

  it('gives a clamp zero slope outside its range', () => {
    const g = new Graph();
    const x = g.input('x0');
    const [d] = gradient(mul(3, clamp(x, -1, 1)), [x]);
    assert.deepEqual(evaluate([d], { x0: 0.5 }), [3]);
    assert.deepEqual(evaluate([d], { x0: 1.5 }), [0]);
  });

  it('computes a numerically safe softmax', () => {
    const g = new Graph();
    const [a, b] = g.inputs('x', 2);
    const w = softmax([a, b]);
    const [w0, w1] = evaluate(w, { x0: 1000, x1: 999 });
    assert.ok(Math.abs(w0 - 1 / (1 + Math.exp(-1))) < 1e-12);
    assert.ok(Math.abs(w0 + w1 - 1) < 1e-12);
  });

  it('refuses to emit a non-finite constant', () => {
    const g = new Graph();
    const x = g.input('x0');
    assert.throws(() => emitBody([mul(x, Infinity)], javascript), /non-finite constant/);
  });
});
