import type { PlannerDescriptor } from '../descriptor.js';
import { GpuSmcTimePlanner } from './gpu.js';
import { policyProposal, SMC_TIME_PARAMS, SmcTimePlanner, SmcVariant } from './receding.js';

/** SPO (Macfarlane et al.): the policy proposes, advantages weigh, q-hat from the surviving particles' root ancestors (Algorithm 1). */
export const SPO_VARIANT: SmcVariant = {
  name: 'spo',
  proposal: (p, bounded) => policyProposal(p.policyStdScale as number, bounded, p.meanParticle === true),
  rootWeights: (r) => r.survivingWeights,
  revive: () => false,
  gpu: { trustRegion: false, backedUp: false },
};

/** Per-system tuning both members start from (measured in docs/results.md, "SMC planning over time"). */
/** The SMC-over-time charts both members share: the weights' health along the depth, and q-hat over the root particles. */
export const SMC_TIME_CHARTS = [
  { title: 'SMC over time: ESS / K along the depth of the last plan (x: step)', kind: 'last', series: ['ess_ratio'], labels: ['ESS / K'] },
  { title: 'SMC over time: q-hat over the root particles of the last plan (x: particle)', kind: 'last', series: ['q_hat'], labels: ['q-hat'] },
] as const;

export const SPO: PlannerDescriptor = {
  name: 'spo',
  summary: 'SPO: SMC over time with a learned policy as proposal and advantage weights; needs a prior (train-prior)',
  schema: SMC_TIME_PARAMS,
  distils: true,
  gpu: true,
  sizeKey: 'particles',
  liveKey: 'eta',
  prior: 'required',
  readsValue: () => true,
  build: ({ model, params, rng, seed, guide, gpu }) => (gpu
    ? GpuSmcTimePlanner.create(model, gpu, params as never, seed, guide!, SPO_VARIANT)
    : new SmcTimePlanner(model, params as never, rng, guide!, SPO_VARIANT)),
  charts: SMC_TIME_CHARTS,
};
