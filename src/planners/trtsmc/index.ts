import { flag, num } from '../../params.js';
import type { PlannerDescriptor } from '../descriptor.js';
import { SMC_TIME_CHARTS } from '../spo/index.js';
import { GpuSmcTimePlanner } from '../spo/gpu.js';
import { SMC_TIME_PARAMS, SmcTimePlanner, SmcVariant } from '../spo/receding.js';
import type { Proposal } from '../spo/smc.js';
import { normalise } from '../spo/smc.js';
import { trustRegion } from './trust-region.js';

export const TRTSMC_PARAMS = {
  ...SMC_TIME_PARAMS,
  alpha: num(0.1, 'greediness of the trust-region proposal: KL(q || pi) <= alpha KL(pi* || pi) over the atoms (0 = the policy, 1 = greedy in the learned Q)', { min: 0, max: 1 }),
  atoms: num(16, 'atoms B drawn from the policy at each particle and step, over which the proposal is solved', { min: 2, max: 1024, integer: true }),
  revive: flag(true, 'revived resampling: resampled particles continue from their parent\'s last non-terminal (finite) state, not its current one'),
} as const;

/**
 * At each particle: B atoms from pi (std x policyStdScale, clipped), their
 * learned Q, the trust-region Boltzmann policy over them, one atom drawn:
 * the proposal is about pi_wide(a) B q_b, so log(pi / proposal) = log(pi /
 * pi_wide)(a_b) - log B - log q_b, the first term at the unclipped draw as
 * SPO's proposal corrects (0 at policyStdScale 1: the paper's form). The
 * per-step figure is the mean inverse temperature beta of the finite ones.
 * Q, most of a step's time, is evaluated only at the particles whose draw
 * is used: not at the mean particle nor at those the loop overwrites (their
 * random numbers are drawn all the same, so the others' streams do not move),
 * and not at all at alpha 0, where the proposal is the policy whatever Q says.
 */
export function trustRegionProposal(
  alpha: number, atoms: number, scale: number, bounded: readonly boolean[],
  q: (states: Float64Array, count: number, z: Float64Array, perState: number) => Float64Array, meanParticle = false,
): Proposal {
  const m = bounded.length;
  return (states, count, policy, rng, overwritten) => {
    const B = atoms;
    const n = states.length / Math.max(1, count);
    const z = new Float64Array(count * B * m);
    // log pi / pi_wide per atom: log N(z; mu, s) - log N(z; mu, scale s)
    const logRatio = new Float64Array(count * B);
    for (let i = 0; i < count; i++) {
      for (let b = 0; b < B; b++) {
        for (let j = 0; j < m; j++) {
          const e = rng.normal();
          let v = policy.mean[i * m + j] + scale * policy.std[i * m + j] * e;
          if (bounded[j]) v = v > 1 ? 1 : v < -1 ? -1 : v;
          z[(i * B + b) * m + j] = v;
          if (scale !== 1) logRatio[i * B + b] += 0.5 * e * e * (1 - scale * scale) + Math.log(scale);
        }
      }
    }
    const meanAt = meanParticle && count > 0 ? count - 1 : -1;
    const twisted = Array.from({ length: count }, (_, i) => i).filter((i) => i !== meanAt && !overwritten?.[i]);
    // Q of the twisted particles' atoms, gathered into one call
    const values = new Float64Array(count * B);
    if (twisted.length && alpha > 0) {
      const at = new Float64Array(twisted.length * n);
      const za = new Float64Array(twisted.length * B * m);
      twisted.forEach((i, r) => {
        at.set(states.subarray(i * n, (i + 1) * n), r * n);
        za.set(z.subarray(i * B * m, (i + 1) * B * m), r * B * m);
      });
      const qs = q(at, twisted.length, za, B);
      twisted.forEach((i, r) => values.set(qs.subarray(r * B, (r + 1) * B), i * B));
    }
    const actions = new Float64Array(count * m);
    const logCorrection = new Float64Array(count);
    let betaSum = 0;
    let betaCount = 0;
    let next = 0;
    for (let i = 0; i < count; i++) {
      let u = rng.uniform();
      if (twisted[next] !== i) continue;
      next++;
      const step = trustRegion(values.subarray(i * B, (i + 1) * B), alpha);
      let k = 0;
      while (k < B - 1 && (u -= step.probs[k]) > 0) k++;
      actions.set(z.subarray((i * B + k) * m, (i * B + k + 1) * m), i * m);
      logCorrection[i] = logRatio[i * B + k] - Math.log(B) - Math.log(step.probs[k]);
      if (Number.isFinite(step.beta)) {
        betaSum += step.beta;
        betaCount++;
      }
    }
    // the last particle takes the policy's mean, as in SPO's proposal: log pi / pi_wide there is m log(scale)
    if (meanAt >= 0) {
      const i = meanAt;
      for (let j = 0; j < m; j++) {
        const v = policy.mean[i * m + j];
        actions[i * m + j] = bounded[j] ? Math.min(1, Math.max(-1, v)) : v;
        if (scale !== 1) logCorrection[i] += Math.log(scale);
      }
    }
    return { actions, logCorrection, figure: betaCount ? betaSum / betaCount : Infinity };
  };
}

/** TRT-SMC: SPO's loop with the trust-region twisted proposal, revived resampling, and q-hat from the backed-up ancestor statistics (Algorithm 2). */
export const TRTSMC_VARIANT: SmcVariant = {
  name: 'trtsmc',
  proposal: (p, bounded, guide, reference) => trustRegionProposal(p.alpha as number, p.atoms as number, p.policyStdScale as number, bounded,
    (states, count, z, perState) => guide.prior.q(states, count, z, perState, reference), p.meanParticle === true),
  // q-hat ∝ pi exp(Q-hat) over the root atoms (the root's log(pi / q) is inside Q-hat), each root against the steps it took part in
  rootWeights: (r) => normalise(r.backedUp.map((v, j) => v - r.backedUpBaseline[j])),
  revive: (p) => p.revive === true,
  figureName: 'beta',
  gpu: { trustRegion: true, backedUp: true },
};

export const TRTSMC: PlannerDescriptor = {
  name: 'trtsmc',
  summary: 'TRT-SMC: SMC over time with a trust-region twisted proposal over the learned Q and backed-up ancestor statistics; needs a prior (train-prior)',
  schema: TRTSMC_PARAMS,
  distils: true,
  gpu: true,
  sizeKey: 'particles',
  liveKey: 'alpha',
  prior: 'required',
  readsValue: () => true,
  build: ({ model, params, rng, seed, guide, gpu }) => (gpu
    ? GpuSmcTimePlanner.create(model, gpu, params as never, seed, guide!, TRTSMC_VARIANT)
    : new SmcTimePlanner(model, params as never, rng, guide!, TRTSMC_VARIANT)),
  charts: [...SMC_TIME_CHARTS, { title: 'TRT-SMC: mean inverse temperature beta of the proposal along the depth (x: step)', kind: 'last', series: ['beta'], labels: ['beta'] }],
};
