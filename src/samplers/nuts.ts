import type { Rng } from '../random.js';
import { sqNorm } from './hmc.js';
import { copyParticle, emptyState, Evaluation, MoveKernel, ParticleState, potential, potentialGrad, Target } from './target.js';

export interface NutsParams {
  stepSize: number;
  maxTreeDepth: number;
}

// A leaf whose energy exceeds the start by this much ends the trajectory (divergence).
const DIVERGENCE = 1000;

/**
 * The No-U-Turn Sampler (multinomial sampling, generalised U-turn criterion,
 * iterative tree building with momentum checkpoints), identity mass.
 *
 * Particles run in lockstep: every tick each still-building particle takes
 * one leapfrog step along its own trajectory, and the new positions of all
 * of them are evaluated in one batch. A particle stops when its trajectory
 * turns, diverges or reaches the depth limit; the others carry on.
 */
export function nutsKernel({ stepSize: eps, maxTreeDepth }: NutsParams): MoveKernel {
  return {
    name: 'nuts',
    async step(rng: Rng, target: Target, s: ParticleState, beta: number) {
      const { dim, lambda } = target;
      const n = s.count;
      const D = maxTreeDepth;
      const vec = () => new Float64Array(n * dim);
      // Trajectory ends (position, momentum, potential gradient) and the leaf the next step continues from.
      const qL = s.positions.slice(), qR = s.positions.slice(), qC = s.positions.slice();
      const rL = rng.fillNormal(vec()), rR = rL.slice(), rC = rL.slice();
      const gL = vec();
      for (let i = 0; i < n; i++) potentialGrad(s, i, dim, beta, lambda, gL, i * dim);
      const gR = gL.slice(), gC = gL.slice();
      const h0 = Float64Array.from({ length: n }, (_, i) => potential(s, i, beta, lambda) + 0.5 * sqNorm(rL, i * dim, dim));
      // Whole tree and current subtree summaries.
      const treeLogW = new Float64Array(n); // log sum of exp(h0 - H) over the tree's leaves; the start leaf has 0
      const treeRSum = rL.slice();
      const subLogW = new Float64Array(n).fill(-Infinity);
      const subRSum = vec();
      const rCk = new Float64Array(n * D * dim);
      const rSumCk = new Float64Array(n * D * dim);
      const depth = new Int32Array(n);
      const leaf = new Int32Array(n);
      const dir = Int8Array.from({ length: n }, () => (rng.uniform() < 0.5 ? -1 : 1));
      const active = new Uint8Array(n).fill(D > 0 ? 1 : 0);
      // Candidate proposals keep only their position; gradients are recomputed once at the end.
      const proposal = s.positions.slice();
      const subProposal = new Float64Array(n * dim);
      const moved = new Uint8Array(n);
      const subMoved = new Uint8Array(n);
      const accSum = new Float64Array(n);
      const leaves = new Int32Array(n);
      const divergent = new Uint8Array(n);

      // Subtree building starts from the tree's end in the chosen direction.
      const startSubtree = (i: number) => {
        dir[i] = rng.uniform() < 0.5 ? -1 : 1;
        const [q, r, g] = dir[i] > 0 ? [qR, rR, gR] : [qL, rL, gL];
        const o = i * dim;
        qC.set(q.subarray(o, o + dim), o);
        rC.set(r.subarray(o, o + dim), o);
        gC.set(g.subarray(o, o + dim), o);
        leaf[i] = 0;
        subLogW[i] = -Infinity;
        subMoved[i] = 0;
        subRSum.fill(0, o, o + dim);
      };
      for (let i = 0; i < n; i++) if (active[i]) startSubtree(i);

      for (;;) {
        const idx: number[] = [];
        for (let i = 0; i < n; i++) if (active[i]) idx.push(i);
        if (!idx.length) break;
        const m = idx.length;
        const batch = new Float64Array(m * dim);
        idx.forEach((i, b) => {
          const o = i * dim;
          const e = dir[i] * eps;
          for (let j = 0; j < dim; j++) {
            rC[o + j] -= 0.5 * e * gC[o + j];
            qC[o + j] += e * rC[o + j];
            batch[b * dim + j] = qC[o + j];
          }
        });
        const ev: Evaluation = await target.evaluate(batch, m);
        idx.forEach((i, b) => {
          const o = i * dim;
          const e = dir[i] * eps;
          // one fused pass: new gradient, second momentum half step, kinetic energy
          const k = beta / lambda;
          const gE = ev.energyGrad;
          const gP = ev.priorGrad;
          let kinetic = 0;
          for (let j = 0; j < dim; j++) {
            const g = (k === 0 ? 0 : k * gE[b * dim + j]) + gP[b * dim + j];
            gC[o + j] = g;
            const r = rC[o + j] - 0.5 * e * g;
            rC[o + j] = r;
            kinetic += r * r;
          }
          const h = potential(ev, b, beta, lambda) + 0.5 * kinetic;
          const logW = h0[i] - h;
          leaves[i]++;
          accSum[i] += Number.isNaN(logW) ? 0 : Math.min(1, Math.exp(logW));
          if (!(logW > -DIVERGENCE)) {
            divergent[i] = 1;
            active[i] = 0; // the unfinished subtree is discarded
            return;
          }
          // multinomial sampling within the subtree
          subLogW[i] = logAddExp(subLogW[i], logW);
          if (rng.uniform() < Math.exp(logW - subLogW[i])) {
            subProposal.set(batch.subarray(b * dim, (b + 1) * dim), o);
            subMoved[i] = 1;
          }
          for (let j = 0; j < dim; j++) subRSum[o + j] += rC[o + j];
          // U-turn checks inside the subtree via momentum checkpoints
          const n1 = leaf[i];
          const [ckMin, ckMax] = checkpointRange(n1);
          if (n1 % 2 === 0) {
            rCk.set(rC.subarray(o, o + dim), (i * D + ckMax) * dim);
            rSumCk.set(subRSum.subarray(o, o + dim), (i * D + ckMax) * dim);
          } else {
            for (let k = ckMax; k >= ckMin; k--) {
              const c = (i * D + k) * dim;
              if (isSubtreeTurning(rCk, rSumCk, c, rC, subRSum, o, dim)) {
                active[i] = 0;
                return;
              }
            }
          }
          leaf[i] = n1 + 1;
          if (leaf[i] < 1 << depth[i]) return;
          // Subtree complete: biased progressive sampling, then merge.
          if (rng.uniform() < Math.exp(subLogW[i] - treeLogW[i])) {
            proposal.set(subProposal.subarray(o, o + dim), o);
            moved[i] = subMoved[i];
          }
          treeLogW[i] = logAddExp(treeLogW[i], subLogW[i]);
          for (let j = 0; j < dim; j++) treeRSum[o + j] += subRSum[o + j];
          const [q, r, g] = dir[i] > 0 ? [qR, rR, gR] : [qL, rL, gL];
          q.set(qC.subarray(o, o + dim), o);
          r.set(rC.subarray(o, o + dim), o);
          g.set(gC.subarray(o, o + dim), o);
          depth[i]++;
          if (depth[i] >= D || isTurning(rL, rR, treeRSum, o, dim)) {
            active[i] = 0;
            return;
          }
          startSubtree(i);
        });
      }

      let movedCount = 0;
      let acc = 0;
      let div = 0;
      let evals = 0;
      const changed: number[] = [];
      for (let i = 0; i < n; i++) {
        if (moved[i]) {
          movedCount++;
          changed.push(i);
        }
        acc += leaves[i] ? accSum[i] / leaves[i] : 0;
        div += divergent[i];
        evals += leaves[i];
      }
      // One batched evaluation restores the gradients of the particles that moved.
      const state = emptyState(n, dim);
      for (let i = 0; i < n; i++) if (!moved[i]) copyParticle(s, i, state, i, dim);
      if (changed.length) {
        const q = new Float64Array(changed.length * dim);
        changed.forEach((i, b) => q.set(proposal.subarray(i * dim, (i + 1) * dim), b * dim));
        const fresh: ParticleState = { count: changed.length, positions: q, ...(await target.evaluate(q, changed.length)) };
        changed.forEach((i, b) => copyParticle(fresh, b, state, i, dim));
        evals += changed.length / n;
      }
      const moved_ = movedCount;
      return {
        state,
        info: { acceptance: acc / n, accepted: moved_ / n, divergent: div / n, gradientEvaluations: evals / n },
      };
    },
  };
}

function logAddExp(a: number, b: number): number {
  if (a === -Infinity) return b;
  if (b === -Infinity) return a;
  const m = Math.max(a, b);
  return m + Math.log(Math.exp(a - m) + Math.exp(b - m));
}

/**
 * Checkpoints a leaf's U-turn checks use (NumPyro's iterative NUTS): the
 * sub-subtrees ending at leaf n are those whose sizes divide n + 1.
 */
function checkpointRange(n: number): [number, number] {
  let idxMax = 0;
  for (let k = n >> 1; k > 0; k >>= 1) idxMax += k & 1;
  let trailingOnes = 0;
  for (let k = n; k & 1; k >>= 1) trailingOnes++;
  return [idxMax - trailingOnes + 1, idxMax];
}

/** Generalised U-turn criterion with identity mass, over a trajectory's end momenta and momentum sum. */
function isTurning(rA: Float64Array, rB: Float64Array, rSum: Float64Array, o: number, dim: number): boolean {
  let da = 0;
  let db = 0;
  for (let j = o; j < o + dim; j++) {
    const c = rSum[j] - 0.5 * (rA[j] + rB[j]);
    da += rA[j] * c;
    db += rB[j] * c;
  }
  return da <= 0 || db <= 0;
}

/** The same criterion for the sub-subtree from checkpoint c to the newest leaf (momentum sum rebuilt from checkpoints). */
function isSubtreeTurning(rCk: Float64Array, rSumCk: Float64Array, c: number, r: Float64Array, subRSum: Float64Array, o: number, dim: number): boolean {
  let da = 0;
  let db = 0;
  for (let j = 0; j < dim; j++) {
    const left = rCk[c + j];
    const right = r[o + j];
    const sum = subRSum[o + j] - rSumCk[c + j] + left;
    const centred = sum - 0.5 * (left + right);
    da += left * centred;
    db += right * centred;
  }
  return da <= 0 || db <= 0;
}
