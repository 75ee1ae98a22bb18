/** Small dense linear algebra on numbers, shared by the EKF, the LQR, the plan's feedback gains and identification. */

export type Matrix = number[][];

export const transpose = (A: readonly (readonly number[])[]): Matrix => (A.length ? A[0].map((_, j) => A.map((row) => row[j])) : []);
export const matMul = (A: readonly (readonly number[])[], B: readonly (readonly number[])[]): Matrix => A.map((row) => B[0].map((_, j) => row.reduce((s, a, k) => s + a * B[k][j], 0)));
export const matAdd = (A: readonly (readonly number[])[], B: readonly (readonly number[])[]): Matrix => A.map((row, i) => row.map((a, j) => a + B[i][j]));
export const matSub = (A: readonly (readonly number[])[], B: readonly (readonly number[])[]): Matrix => A.map((row, i) => row.map((a, j) => a - B[i][j]));
export const dot = (a: readonly number[], b: readonly number[]): number => a.reduce((s, v, i) => s + v * b[i], 0);
export const matVec = (A: readonly (readonly number[])[], v: readonly number[]): number[] => A.map((row) => dot(row, v));
/** The diagonal matrix of `values`. */
export const diagonalMatrix = (values: readonly number[]): Matrix => values.map((d, i) => values.map((_, j) => (i === j ? d : 0)));

/** Gauss-Jordan with partial pivoting; a singular matrix gives non-finite entries (the caller checks). */
export function invert(A: readonly (readonly number[])[]): number[][] {
  const n = A.length;
  const M = A.map((row, i) => [...row, ...Array.from({ length: n }, (_, j) => (i === j ? 1 : 0))]);
  for (let c = 0; c < n; c++) {
    let pivot = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(M[r][c]) > Math.abs(M[pivot][c])) pivot = r;
    [M[c], M[pivot]] = [M[pivot], M[c]];
    const d = M[c][c];
    for (let j = 0; j < 2 * n; j++) M[c][j] /= d;
    for (let r = 0; r < n; r++) {
      if (r === c) continue;
      const f = M[r][c];
      if (f !== 0) for (let j = 0; j < 2 * n; j++) M[r][j] -= f * M[c][j];
    }
  }
  return M.map((row) => row.slice(n));
}

/** The lower Cholesky factor L (A = L L') of a symmetric matrix, or undefined when A is not positive definite. */
export function cholesky(A: readonly (readonly number[])[]): number[][] | undefined {
  const n = A.length;
  const L = A.map(() => new Array<number>(n).fill(0));
  for (let j = 0; j < n; j++) {
    let d = A[j][j];
    for (let k = 0; k < j; k++) d -= L[j][k] * L[j][k];
    if (!(d > 0)) return undefined;
    L[j][j] = Math.sqrt(d);
    for (let i = j + 1; i < n; i++) {
      let s = A[i][j];
      for (let k = 0; k < j; k++) s -= L[i][k] * L[j][k];
      L[i][j] = s / L[j][j];
    }
  }
  return L;
}

/** z solving L z = b for a lower-triangular L. */
export function lowerSolve(L: readonly (readonly number[])[], b: readonly number[]): number[] {
  const z = [...b];
  for (let i = 0; i < z.length; i++) {
    for (let k = 0; k < i; k++) z[i] -= L[i][k] * z[k];
    z[i] /= L[i][i];
  }
  return z;
}

/** x solving L' x = z for a lower-triangular L. */
export function lowerTransposeSolve(L: readonly (readonly number[])[], z: readonly number[]): number[] {
  const x = [...z];
  for (let i = x.length - 1; i >= 0; i--) {
    for (let k = i + 1; k < x.length; k++) x[i] -= L[k][i] * x[k];
    x[i] /= L[i][i];
  }
  return x;
}

/** x solving L L' x = b for a Cholesky factor L. */
export function choleskySolve(L: readonly (readonly number[])[], b: readonly number[]): number[] {
  return lowerTransposeSolve(L, lowerSolve(L, b));
}

/**
 * A symmetric positive definite block-tridiagonal matrix (square blocks
 * `diagonal[k]`, `lower[k]` below the diagonal at block row k + 1),
 * factored block by block: time and memory linear in the number of blocks.
 * Undefined when the matrix is not positive definite.
 */
export function blockTridiagonalFactor(diagonal: readonly (readonly (readonly number[])[])[], lower: readonly (readonly (readonly number[])[])[]): BlockTridiagonalFactor | undefined {
  const factors: number[][][] = [];
  // E[k] = lower[k] L_k^-T: the factor's block below L_k
  const below: number[][][] = [];
  for (let k = 0; k < diagonal.length; k++) {
    const reduced = k === 0 ? diagonal[0] : matSub(diagonal[k], matMul(below[k - 1], transpose(below[k - 1])));
    const L = cholesky(reduced);
    if (!L) return undefined;
    factors.push(L);
    if (k < lower.length) below.push(lower[k].map((row) => lowerSolve(L, row)));
  }
  return {
    solve(b) {
      const z: number[][] = [];
      for (let k = 0; k < factors.length; k++) z.push(lowerSolve(factors[k], k === 0 ? b[0] : b[k].map((v, i) => v - dot(below[k - 1][i], z[k - 1]))));
      const x: number[][] = new Array(factors.length);
      for (let k = factors.length - 1; k >= 0; k--) {
        const rhs = k === factors.length - 1 ? z[k] : z[k].map((v, i) => v - below[k].reduce((s, row, r) => s + row[i] * x[k + 1][r], 0));
        x[k] = lowerTransposeSolve(factors[k], rhs);
      }
      return x;
    },
    inverseBlocks() {
      // from the last block back: S_kk = (L_k L_k')^-1 + G_k' S_k+1,k+1 G_k and S_k+1,k = -S_k+1,k+1 G_k, with G_k = E_k L_k^-1
      const inverseOf = (L: number[][]) => transpose(L.map((_, c) => choleskySolve(L, L.map((__, r) => (r === c ? 1 : 0)))));
      const last = factors.length - 1;
      const diagonalBlocks: number[][][] = new Array(factors.length);
      const lowerBlocks: number[][][] = new Array(last);
      diagonalBlocks[last] = inverseOf(factors[last]);
      for (let k = last - 1; k >= 0; k--) {
        const G = below[k].map((row) => lowerTransposeSolve(factors[k], row));
        const SG = matMul(diagonalBlocks[k + 1], G);
        lowerBlocks[k] = SG.map((row) => row.map((v) => -v));
        diagonalBlocks[k] = matAdd(inverseOf(factors[k]), matMul(transpose(G), SG));
      }
      return { diagonal: diagonalBlocks, lower: lowerBlocks };
    },
  };
}

export interface BlockTridiagonalFactor {
  /** x solving A x = b, in blocks */
  solve(b: readonly (readonly number[])[]): number[][];
  /** the inverse's diagonal blocks and the blocks just below them (its other blocks are not formed) */
  inverseBlocks(): { diagonal: number[][][]; lower: number[][][] };
}

/**
 * The nearest positive semidefinite matrix to a symmetric A (in the
 * Frobenius norm): its eigenvalues below zero set to zero (cyclic Jacobi
 * rotations; small matrices).
 */
export function clipToPsd(A: readonly (readonly number[])[]): number[][] {
  const n = A.length;
  // the common case, a convex cost, costs one Cholesky: semidefinite to working precision already
  const tolerance = 1e-12 * Math.max(1e-300, ...A.map((row, i) => Math.abs(row[i])));
  if (cholesky(A.map((row, i) => row.map((v, j) => (i === j ? v + tolerance : v))))) return A.map((row) => [...row]);
  const a = A.map((row) => [...row]);
  const v = A.map((_, i) => A.map((__, j): number => (i === j ? 1 : 0)));
  const offDiagonal = () => {
    let s = 0;
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) s += a[i][j] * a[i][j];
    return s;
  };
  const size = Math.max(1e-300, ...a.flat().map((x) => x * x));
  for (let sweep = 0; sweep < 100 && offDiagonal() > 1e-30 * size; sweep++) {
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        if (a[p][q] === 0) continue;
        const theta = (a[q][q] - a[p][p]) / (2 * a[p][q]);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k][p];
          const akq = a[k][q];
          a[k][p] = c * akp - s * akq;
          a[k][q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p][k];
          const aqk = a[q][k];
          a[p][k] = c * apk - s * aqk;
          a[q][k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k][p];
          const vkq = v[k][q];
          v[k][p] = c * vkp - s * vkq;
          v[k][q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const lambda = a.map((row, i) => Math.max(0, row[i]));
  return A.map((_, i) => A.map((__, j) => {
    let s = 0;
    for (let k = 0; k < n; k++) s += v[i][k] * lambda[k] * v[j][k];
    return s;
  }));
}
