import { add, mul, Scalar, solveSpd, sub } from '../expr/expr.js';
import { diagonalMatrix, matAdd, matMul, matSub, transpose } from '../linalg.js';
import { InputError } from '../input-error.js';
import type { Model } from './model.js';

type StepFn = (x: Scalar[], u: Scalar[]) => Scalar[];

/**
 * The infinite-horizon LQR cost-to-go matrix P at an equilibrium (xEq, uEq)
 * of a discrete step, for the quadratic cost sum x'Qx + u'Ru. The
 * linearisation comes from the model's own step evaluated on numbers (the
 * expression helpers fold numbers), by central differences, so the model is
 * still written once. P solves the discrete algebraic Riccati equation by
 * fixed-point iteration.
 *
 * As a terminal cost it tells a short MPC horizon what the rest of the
 * balancing costs; without it a short plan near an unstable, non-minimum-phase
 * equilibrium (the acrobot upright) cannot see why it should act now.
 */
export function lqrCostToGo(step: StepFn, xEq: readonly number[], uEq: readonly number[], q: readonly number[], r: readonly number[]): number[][] {
  return lqr(step, xEq, uEq, q, r).P;
}

/**
 * The discrete LQR at an equilibrium: cost-to-go P and the gain K of the
 * optimal linear feedback u = uEq - K (x - xEq) (rows: controls).
 */
export function lqr(step: StepFn, xEq: readonly number[], uEq: readonly number[], q: readonly number[], r: readonly number[]): { P: number[][]; K: number[][] } {
  const n = xEq.length;
  const f = (x: number[], u: number[]) => step(x, u).map((v) => {
    if (typeof v !== 'number') throw new Error('lqrCostToGo: the step did not fold to numbers');
    return v;
  });
  const h = 1e-6;
  const column = (perturb: (d: number) => number[]) => {
    const plus = perturb(h);
    const minus = perturb(-h);
    return plus.map((v, i) => (v - minus[i]) / (2 * h));
  };
  const aCols = xEq.map((_, j) => column((d) => f(xEq.map((v, i) => v + (i === j ? d : 0)), [...uEq])));
  const bCols = uEq.map((_, j) => column((d) => f([...xEq], uEq.map((v, i) => v + (i === j ? d : 0)))));
  const A = Array.from({ length: n }, (_, i) => aCols.map((c) => c[i]));
  const B = Array.from({ length: n }, (_, i) => bCols.map((c) => c[i]));
  let P = diagonalMatrix(q);
  for (let it = 0; it < 100000; it++) {
    // P' = Q + A'PA - A'PB (R + B'PB)^-1 B'PA
    const PA = matMul(P, A);
    const PB = matMul(P, B);
    const BtPB = matMul(transpose(B), PB);
    const S = BtPB.map((row, i) => row.map((v, j) => v + (i === j ? r[i] : 0)));
    const BtPA = matMul(transpose(B), PA);
    // K = S^-1 B'PA, column by column (the expression helpers fold numbers)
    const K = transpose(transpose(BtPA).map((col) => solveSpd(S, col) as number[]));
    const next = matAdd(diagonalMatrix(q), matSub(matMul(transpose(A), PA), matMul(matMul(transpose(A), PB), K)));
    const previous = P.flat();
    const change = Math.max(...next.flat().map((v, k) => Math.abs(v - previous[k])));
    P = next.map((row, i) => row.map((v, j) => 0.5 * (v + next[j][i])));
    if (!P.flat().every(Number.isFinite)) throw new Error('lqrCostToGo: the Riccati iteration diverged (is the equilibrium stabilisable?)');
    if (change <= 1e-10 * Math.max(1, ...P.flat().map(Math.abs))) return { P, K };
  }
  throw new Error('lqrCostToGo: the Riccati iteration did not converge');
}

/** The LQR weights of `bench lqr`'s yardstick, and of a policy's catch: every state 1, every control 0.01. */
export const YARDSTICK_LQR_WEIGHTS = { state: 1, control: 0.01 } as const;

/** The LQR at a model's goal, an equilibrium of its step (no noise) with control uEq. */
export function goalLqr(model: Model, uEq: readonly number[], q: readonly number[], r: readonly number[]): { P: number[][]; K: number[][] } {
  const noise = new Array<number>(model.noiseDim).fill(0);
  return lqr((x, u) => model.def.step(x, u, noise, model.params as never), model.goal, uEq, q, r);
}

/** (x - ref)' P (x - ref) as an expression: the LQR cost-to-go as a terminal cost. */
export function lqrTerminalCost(P: readonly (readonly number[])[], x: readonly Scalar[], ref: readonly Scalar[]): Scalar {
  const e = x.map((xi, i) => sub(xi, ref[i]));
  let total: Scalar = 0;
  for (let i = 0; i < e.length; i++) for (let j = 0; j < e.length; j++) total = add(total, mul(P[i][j], mul(e[i], e[j])));
  return total;
}

/**
 * A model's terminalLqr term: weight x (x - ref)' P (x - ref), P the LQR
 * cost-to-go at the goal, an equilibrium of `step` with control uEq, for the
 * stage weights q and r. Where the parameters leave the goal unstabilisable
 * (umax 0, say) there is no P: a refusal naming the model's setting.
 */
export function lqrTerminalTerm(model: string, weight: number, step: StepFn, goal: readonly number[], uEq: readonly number[], q: readonly number[], r: readonly number[], x: readonly Scalar[], ref: readonly Scalar[]): Scalar {
  let P: number[][];
  try {
    P = lqrCostToGo(step, goal, uEq, q, r);
  } catch (e) {
    throw new InputError(`${model}.terminalLqr = ${weight} needs the LQR cost-to-go at the goal: ${(e as Error).message} (check umax, or set terminalLqr to 0)`);
  }
  return mul(weight, lqrTerminalCost(P, x, ref));
}
