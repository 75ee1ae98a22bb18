import { choice, flag, num, text } from '../params.js';

/**
 * How the controller uses a learned prior (PO-MPC): parameters `prior.*`.
 * MPPI draws policy samples and adds the value; TSMC can centre its prior on the policy.
 * The prior itself is loaded at configure from `path`; the rest apply live.
 */
export const PRIOR_PARAMS = {
  path: text('', 'directory of a trained prior (`train-prior --out`); empty: none', { maxLength: 4096, readOnly: 'the prior is loaded and checked at configure' }),
  policySamples: num(32, 'MPPI samples per iteration drawn by rolling the sampling policy through the model (n_pi; at most mppi.samples)', { min: 0, max: 1 << 20, integer: true }),
  policyStdScale: num(1, 'multiplies the sampling policy\'s std when it draws MPPI\'s samples (the first stays the policy\'s mean): wider proposals explore more at small M', { min: 0, max: 100 }),
  value: flag(true, 'add the learned value V(x_H) = Q(x_H, pi_s(x_H)) to every sample\'s cost (eq. (10))'),
  valueWeight: num(1, 'weight of the learned value in the sample cost', { min: 0, max: 1e6 }),
  tsmcCentre: choice('plan', ['plan', 'policy'] as const, 'TSMC: centre the AR(1) prior on the shifted previous plan, or on the sampling policy\'s mean rollout from the current state (the policy and value settings above are MPPI\'s)'),
} as const;
