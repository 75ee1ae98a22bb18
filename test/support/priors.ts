import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { saveCheckpoint } from '../../src/learned/checkpoint.js';
import { boundedControls, defaultFeatures, initNetworks } from '../../src/learned/networks.js';
import { controlScaling } from '../../src/models/controls.js';
import type { Model } from '../../src/models/model.js';
import { Rng } from '../../src/random.js';

/**
 * A pendulum prior with seeded untrained networks (2 x 16), saved to a new
 * temporary directory (the caller removes it): a stand-in for a trained
 * prior with the same shapes and code paths, for planners that need one.
 */
export function untrainedPendulumPrior(model: Model): string {
  const dir = mkdtempSync(join(tmpdir(), 'untrained-prior-'));
  const s = controlScaling(model);
  saveCheckpoint(dir, initNetworks(new Rng(2), { stateDim: 2, controlDim: 1, features: defaultFeatures(model), hidden: [16, 16] }), {
    version: 'test', system: 'pendulum', stateNames: ['theta', 'omega'], controlNames: ['u'], stateDim: 2, controlDim: 1, horizon: model.horizon, dtS: model.dtS,
    reference: [...model.goal], features: defaultFeatures(model), controlCenter: Array.from(s.center), controlScale: Array.from(s.scale), bounded: boundedControls(model),
    hidden: [16, 16], valueTransform: 'symlog', gamma: 0.97, training: {}, episodes: 0, updates: 0,
  });
  return dir;
}
