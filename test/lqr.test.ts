import assert from 'node:assert/strict';
import { lqr, lqrCostToGo } from '../src/models/lqr.js';
import type { Scalar } from '../src/expr/expr.js';
import { cpu, model } from './helpers.js';

type M = number[][];
const mul = (X: M, Y: M): M => X.map((r) => Y[0].map((_, j) => r.reduce((s, v, k) => s + v * Y[k][j], 0)));
const tr = (X: M): M => X[0].map((_, j) => X.map((r) => r[j]));

describe('LQR cost-to-go from a model step', () => {
  it('matches the closed form for a scalar integrator: p = (q + sqrt(q^2 + 4qr)) / 2', () => {
    const P = lqrCostToGo((x, u) => [(x[0] as number) + (u[0] as number)], [0], [0], [2], [3]);
    assert.ok(Math.abs(P[0][0] - (2 + Math.sqrt(4 + 24)) / 2) < 1e-8, `p = ${P[0][0]}`);
  });

  it('acrobot upright: P solves the Riccati equation and its gain stabilises the linearisation', () => {
    const m = model('acrobot');
    const step = (x: Scalar[], u: Scalar[]) => m.def.step(x, u, [], m.params).map((v) => v as number);
    const xEq = [Math.PI, 0, 0, 0];
    const P = lqrCostToGo(step, xEq, [0], [1, 1, 0.01, 0.01], [0.01]);
    // the linearisation, by central differences of the same step
    const h = 1e-6;
    const col = (d: (e: number) => number[]) => d(h).map((v, i) => (v - d(-h)[i]) / (2 * h));
    const A = tr(xEq.map((_, j) => col((e) => step(xEq.map((v, i) => v + (i === j ? e : 0)), [0]))));
    const B = tr([col((e) => step([...xEq], [e]))]);
    const S = 0.01 + mul(mul(tr(B), P), B)[0][0];
    const K = mul(mul(tr(B), P), A)[0].map((v) => v / S);
    const gain = lqr(step, xEq, [0], [1, 1, 0.01, 0.01], [0.01]).K;
    for (let j = 0; j < 4; j++) assert.ok(Math.abs(gain[0][j] - K[j]) < 1e-6 * Math.abs(K[j]), `lqr() gain ${gain[0][j]} against ${K[j]}`);
    const Q = [1, 1, 0.01, 0.01];
    const riccati = mul(mul(tr(A), P), A).map((r, i) => r.map((v, j) => v + (i === j ? Q[i] : 0) - mul(mul(tr(A), P), B)[i][0] * K[j]));
    const scale = Math.max(...P.flat().map(Math.abs));
    for (let i = 0; i < 4; i++) for (let j = 0; j < 4; j++) assert.ok(Math.abs(riccati[i][j] - P[i][j]) < 1e-6 * scale, `DARE residual at ${i},${j}`);
    // the upright is unstable open loop, stable under u = -K x
    const closed = A.map((r, i) => r.map((v, j) => v - B[i][0] * K[j]));
    const growth = (X: M) => {
      let v = [1, -0.5, 0.3, 0.2];
      for (let k = 0; k < 400; k++) v = X.map((r) => r.reduce((s, a, j) => s + a * v[j], 0));
      return Math.hypot(...v);
    };
    assert.ok(growth(A) > 1e3, 'open loop diverges');
    assert.ok(growth(closed) < 1e-3, 'closed loop converges');
  });

  it('an equilibrium the control cannot stabilise gives an error naming the parameter', () => {
    assert.throws(() => cpu(model('acrobot', { horizon: 5, terminalLqr: 1, umax: 0 })).costSync({ controls: new Float64Array(5) }), /acrobot\.terminalLqr = 1 .*Riccati iteration diverged/);
  });
});
