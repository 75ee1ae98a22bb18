/**
 * Diagonal Gaussians over normalised controls, as plain numbers: the closed
 * forms the trainer's tensor losses are tested against, and what the
 * planner needs at run time (no tensor library on the control path).
 */

/** KL[N(muA, stdA^2) || N(muB, stdB^2)], summed over the diagonal. */
export function klDiagonal(muA: ArrayLike<number>, stdA: ArrayLike<number>, muB: ArrayLike<number>, stdB: ArrayLike<number>): number {
  let kl = 0;
  for (let j = 0; j < muA.length; j++) {
    const ratio = stdA[j] / stdB[j];
    const d = (muA[j] - muB[j]) / stdB[j];
    kl += 0.5 * (ratio * ratio + d * d - 1) - Math.log(ratio);
  }
  return kl;
}

/** Differential entropy of N(mu, diag(std^2)). */
export function entropyDiagonal(std: ArrayLike<number>): number {
  let h = 0;
  for (let j = 0; j < std.length; j++) h += 0.5 * Math.log(2 * Math.PI * Math.E) + Math.log(std[j]);
  return h;
}
