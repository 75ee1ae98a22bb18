/** Dense helpers for closed-form checks in tests (small symmetric positive definite matrices), on the project's own Cholesky. */
import { cholesky as choleskyOrUndefined, choleskySolve } from '../src/linalg.js';

export type Mat = number[][];

export function cholesky(a: Mat): Mat {
  const l = choleskyOrUndefined(a);
  if (!l) throw new Error('matrix is not positive definite');
  return l;
}

export function solve(a: Mat, b: number[]): number[] {
  return choleskySolve(cholesky(a), b);
}

export function inverse(a: Mat): Mat {
  const n = a.length;
  const cols = Array.from({ length: n }, (_, j) => solve(a, Array.from({ length: n }, (_, i) => (i === j ? 1 : 0))));
  return Array.from({ length: n }, (_, i) => cols.map((c) => c[i]));
}

export function logDet(a: Mat): number {
  return 2 * cholesky(a).reduce((s, row, i) => s + Math.log(row[i]), 0);
}
