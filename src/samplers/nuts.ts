import { drawMomentum, kineticNorm, unitMassIfNone } from './hmc.js';
import type { Rng } from '../random.js';
import { copyParticle, emptyState, Evaluation, MoveKernel, ParticleState, PendingEvaluation, potential, potentialGrad, submitEvaluation, Target } from './target.js';

export interface NutsParams {
  stepSize: number;
  maxTreeDepth: number;
  /** diagonal of the inverse mass matrix (one value per dimension; default identity) */
  inverseMass?: Float64Array;
  /** the move's arrays, kept from one move to the next (absent: fresh ones each move) */
  workspace?: NutsWorkspace;
}

/**
 * The arrays a NUTS move works in (trajectory ends, momenta, checkpoints),
 * kept between moves: one per run, for one sampler at a time. At N x d in
 * the tens of millions (16000 policies of 1254 weights: 160 MB per array, and
 * some 20 of them) fresh arrays each move cost more in page faults than the
 * move's arithmetic. What a move returns is always its own.
 */
export class NutsWorkspace {
  private readonly arrays = new Map<string, Float64Array>();

  /** The array named `name`, `length` long, holding whatever the last move left in it. */
  take(name: string, length: number): Float64Array {
    let kept = this.arrays.get(name);
    if (!kept || kept.length < length) {
      kept = new Float64Array(length);
      this.arrays.set(name, kept);
    }
    return kept.subarray(0, length);
  }
}

// A leaf whose energy exceeds the start by this much ends the trajectory (divergence).
const DIVERGENCE = 1000;
// Particle groups for a target that evaluates in the background (see `step`).
const GROUPS = 2;

/**
 * The No-U-Turn Sampler (multinomial sampling, generalised U-turn criterion,
 * iterative tree building with momentum checkpoints), with a diagonal mass
 * matrix (identity unless given).
 *
 * Particles run in lockstep: every tick each still-building particle takes
 * one leapfrog step along its own trajectory, and the new positions of all
 * of them are evaluated in one batch. A particle stops when its trajectory
 * turns, diverges or reaches the depth limit; the others carry on.
 */
export function nutsKernel({ stepSize: eps, maxTreeDepth, inverseMass, workspace }: NutsParams): MoveKernel {
  return {
    name: 'nuts',
    async step(rng: Rng, target: Target, s: ParticleState, beta: number) {
      const { dim, lambda } = target;
      const n = s.count;
      const D = maxTreeDepth;
      const ws = workspace ?? new NutsWorkspace();
      const vec = (name: string) => ws.take(name, n * dim);
      const copyOf = (name: string, from: Float64Array) => {
        const v = vec(name);
        v.set(from.subarray(0, n * dim));
        return v;
      };
      // Trajectory ends (position, momentum, potential gradient) and the leaf the next step continues from.
      const qL = copyOf('qL', s.positions), qR = copyOf('qR', s.positions), qC = copyOf('qC', s.positions);
      const minv = unitMassIfNone(inverseMass, dim);
      const rL = drawMomentum(rng, n, minv, vec('rL'));
      const rR = copyOf('rR', rL), rC = copyOf('rC', rL);
      const gL = vec('gL');
      for (let i = 0; i < n; i++) potentialGrad(s, i, dim, beta, lambda, gL, i * dim);
      const gR = copyOf('gR', gL), gC = copyOf('gC', gL);
      const h0 = Float64Array.from({ length: n }, (_, i) => potential(s, i, beta, lambda) + 0.5 * kineticNorm(rL, minv, i * dim, dim));
      // Whole tree and current subtree summaries.
      const treeLogW = new Float64Array(n); // log sum of exp(h0 - H) over the tree's leaves; the start leaf has 0
      const treeRSum = copyOf('treeRSum', rL);
      const subLogW = new Float64Array(n).fill(-Infinity);
      const subRSum = vec('subRSum').fill(0);
      // a checkpoint is written before it is read, within each subtree
      const rCk = ws.take('rCk', n * D * dim);
      const rSumCk = ws.take('rSumCk', n * D * dim);
      const depth = new Int32Array(n);
      const leaf = new Int32Array(n);
      const dir = Int8Array.from({ length: n }, () => (rng.uniform() < 0.5 ? -1 : 1));
      const active = new Uint8Array(n).fill(D > 0 ? 1 : 0);
      // Candidate proposals keep only their position; gradients are recomputed once at the end.
      const proposal = copyOf('proposal', s.positions);
      const subProposal = vec('subProposal');
      const moved = new Uint8Array(n);
      const subMoved = new Uint8Array(n);
      const accSum = new Float64Array(n);
      const leaves = new Int32Array(n);
      const divergent = new Uint8Array(n);

      // Particles in groups, each with its own random stream: while one group's rollouts run on worker threads, this thread
      // does another's bookkeeping. The groups (and so the draws) do not depend on the thread count or timing.
      const G = target.submit && n >= 2 ? GROUPS : 1;
      const groupRng = G === 1 ? [rng] : Array.from({ length: G }, () => rng.split());
      // group g holds particles [bounds[g], bounds[g + 1])
      const bounds = Array.from({ length: G + 1 }, (_, g) => Math.ceil((g * n) / G));
      const groupOf = new Uint8Array(n);
      for (let g = 0; g < G; g++) groupOf.fill(g, bounds[g], bounds[g + 1]);
      // Subtree building starts from the tree's end in the chosen direction.
      const startSubtree = (i: number) => {
        dir[i] = groupRng[groupOf[i]].uniform() < 0.5 ? -1 : 1;
        const [q, r, g] = dir[i] > 0 ? [qR, rR, gR] : [qL, rL, gL];
        const o = i * dim;
        copyRow(q, o, qC, o, dim);
        copyRow(r, o, rC, o, dim);
        copyRow(g, o, gC, o, dim);
        leaf[i] = 0;
        subLogW[i] = -Infinity;
        subMoved[i] = 0;
        subRSum.fill(0, o, o + dim);
      };
      for (let i = 0; i < n; i++) if (active[i]) startSubtree(i);

      const idx = Array.from({ length: G }, (_, g) => new Int32Array(bounds[g + 1] - bounds[g]));
      const counts = new Int32Array(G);
      const batches = Array.from({ length: G }, (_, g) => ws.take(`batch${g}`, (bounds[g + 1] - bounds[g]) * dim));
      const pending: (PendingEvaluation | undefined)[] = new Array(G);
      // the leapfrog steps' evaluations are used once, in `advance`: each group lends its own arrays for them
      const lent = (name: string, count: number): Evaluation => ({
        energy: ws.take(`${name}.energy`, count), energyGrad: ws.take(`${name}.energyGrad`, count * dim),
        prior: ws.take(`${name}.prior`, count), priorGrad: ws.take(`${name}.priorGrad`, count * dim),
      });
      const groupLent = Array.from({ length: G }, (_, g) => lent(`group${g}`, bounds[g + 1] - bounds[g]));
      // One leapfrog position step for the group's active particles, their rollouts started.
      const launch = (g: number) => {
        let m = 0;
        for (let i = bounds[g]; i < bounds[g + 1]; i++) if (active[i]) idx[g][m++] = i;
        counts[g] = m;
        if (!m) {
          pending[g] = undefined;
          return;
        }
        const batch = batches[g].subarray(0, m * dim);
        firstHalfStep(idx[g], m, dim, dir, eps, minv, rC, gC, qC, batch);
        pending[g] = submitEvaluation(target, batch, m, groupLent[g]);
      };
      for (let g = 0; g < G; g++) launch(g);
      while (pending.some((p) => p !== undefined)) {
        for (let g = 0; g < G; g++) {
          const job = pending[g];
          if (!job) continue;
          const ev: Evaluation = await job.result();
          advance(idx[g], counts[g], batches[g], ev, groupRng[g]);
          launch(g);
        }
      }

      /** The second half of the leapfrog step, then each particle's tree bookkeeping. */
      function advance(idx: Int32Array, m: number, batch: Float64Array, ev: Evaluation, rng: Rng): void {
        outer: for (let b = 0; b < m; b++) {
          const i = idx[b];
          const o = i * dim;
          const kinetic = secondHalfStep(o, b * dim, dim, dir[i] * eps, beta / lambda, minv, ev.energyGrad, ev.priorGrad, gC, rC);
          const h = potential(ev, b, beta, lambda) + 0.5 * kinetic;
          const logW = h0[i] - h;
          leaves[i]++;
          accSum[i] += Number.isNaN(logW) ? 0 : Math.min(1, Math.exp(logW));
          if (!(logW > -DIVERGENCE)) {
            divergent[i] = 1;
            active[i] = 0; // the unfinished subtree is discarded
            continue;
          }
          // multinomial sampling within the subtree
          subLogW[i] = logAddExp(subLogW[i], logW);
          if (rng.uniform() < Math.exp(logW - subLogW[i])) {
            copyRow(batch, b * dim, subProposal, o, dim);
            subMoved[i] = 1;
          }
          for (let j = 0; j < dim; j++) subRSum[o + j] += rC[o + j];
          // U-turn checks inside the subtree via momentum checkpoints
          const n1 = leaf[i];
          const [ckMin, ckMax] = checkpointRange(n1);
          if (n1 % 2 === 0) {
            copyRow(rC, o, rCk, (i * D + ckMax) * dim, dim);
            copyRow(subRSum, o, rSumCk, (i * D + ckMax) * dim, dim);
          } else {
            for (let k = ckMax; k >= ckMin; k--) {
              const c = (i * D + k) * dim;
              if (isSubtreeTurning(rCk, rSumCk, c, rC, subRSum, o, dim, minv)) {
                active[i] = 0;
                continue outer;
              }
            }
          }
          leaf[i] = n1 + 1;
          if (leaf[i] < 1 << depth[i]) continue;
          // Subtree complete: biased progressive sampling, then merge.
          if (rng.uniform() < Math.exp(subLogW[i] - treeLogW[i])) {
            copyRow(subProposal, o, proposal, o, dim);
            moved[i] = subMoved[i];
          }
          treeLogW[i] = logAddExp(treeLogW[i], subLogW[i]);
          for (let j = 0; j < dim; j++) treeRSum[o + j] += subRSum[o + j];
          const [q, r, g] = dir[i] > 0 ? [qR, rR, gR] : [qL, rL, gL];
          copyRow(qC, o, q, o, dim);
          copyRow(rC, o, r, o, dim);
          copyRow(gC, o, g, o, dim);
          depth[i]++;
          if (depth[i] >= D || isTurning(rL, rR, treeRSum, o, dim, minv)) {
            active[i] = 0;
            continue;
          }
          startSubtree(i);
        }
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
        const q = ws.take('moved', changed.length * dim);
        changed.forEach((i, b) => q.set(proposal.subarray(i * dim, (i + 1) * dim), b * dim));
        const fresh: ParticleState = { count: changed.length, positions: q, ...(await target.evaluate(q, changed.length, lent('moved', changed.length))) };
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

/** The first momentum half step and the position step of each active particle; new positions into the batch. */
function firstHalfStep(
  idx: Int32Array, m: number, dim: number, dir: Int8Array, eps: number, minv: Float64Array,
  rC: Float64Array, gC: Float64Array, qC: Float64Array, batch: Float64Array,
): void {
  for (let b = 0; b < m; b++) {
    const o = idx[b] * dim;
    const e = dir[idx[b]] * eps;
    for (let j = 0; j < dim; j++) {
      const r = rC[o + j] - 0.5 * e * gC[o + j];
      rC[o + j] = r;
      const q = qC[o + j] + e * minv[j] * r;
      qC[o + j] = q;
      batch[b * dim + j] = q;
    }
  }
}

/** One fused pass for a particle: its new potential gradient, the second momentum half step; returns r' M^-1 r. */
function secondHalfStep(
  o: number, ob: number, dim: number, e: number, k: number, minv: Float64Array,
  gE: Float64Array, gP: Float64Array, gC: Float64Array, rC: Float64Array,
): number {
  let kinetic = 0;
  for (let j = 0; j < dim; j++) {
    const g = (k === 0 ? 0 : k * gE[ob + j]) + gP[ob + j];
    gC[o + j] = g;
    const r = rC[o + j] - 0.5 * e * g;
    rC[o + j] = r;
    kinetic += minv[j] * r * r;
  }
  return kinetic;
}

function copyRow(from: Float64Array, fromOffset: number, to: Float64Array, toOffset: number, dim: number): void {
  to.set(from.subarray(fromOffset, fromOffset + dim), toOffset);
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

/** Generalised U-turn criterion (Betancourt 2017), over a trajectory's end momenta and momentum sum: velocities M^-1 r against the centred sum. */
function isTurning(rA: Float64Array, rB: Float64Array, rSum: Float64Array, o: number, dim: number, minv: Float64Array): boolean {
  let da = 0;
  let db = 0;
  for (let j = 0; j < dim; j++) {
    const k = o + j;
    const c = rSum[k] - 0.5 * (rA[k] + rB[k]);
    da += minv[j] * rA[k] * c;
    db += minv[j] * rB[k] * c;
  }
  return da <= 0 || db <= 0;
}

/** The same criterion for the sub-subtree from checkpoint c to the newest leaf (momentum sum rebuilt from checkpoints). */
function isSubtreeTurning(rCk: Float64Array, rSumCk: Float64Array, c: number, r: Float64Array, subRSum: Float64Array, o: number, dim: number, minv: Float64Array): boolean {
  let da = 0;
  let db = 0;
  for (let j = 0; j < dim; j++) {
    const left = rCk[c + j];
    const right = r[o + j];
    const sum = subRSum[o + j] - rSumCk[c + j] + left;
    const centred = sum - 0.5 * (left + right);
    da += minv[j] * left * centred;
    db += minv[j] * right * centred;
  }
  return da <= 0 || db <= 0;
}
