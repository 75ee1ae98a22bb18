import type { Rng } from '../random.js';

export type ResamplingScheme = 'systematic' | 'multinomial';

/**
 * Ancestor indices for N offspring from normalised weights. Both schemes are
 * unbiased: each particle's expected number of offspring is N w_i.
 */
export function resample(rng: Rng, weights: Float64Array, scheme: ResamplingScheme, count = weights.length): Int32Array {
  const out = new Int32Array(count);
  const total = weights.reduce((a, b) => a + b, 0);
  if (!(total > 0) || !Number.isFinite(total)) throw new Error('cannot resample: weights are all zero or not finite');
  if (scheme === 'systematic') {
    const u0 = rng.uniform() / count;
    let cum = weights[0] / total;
    let i = 0;
    for (let k = 0; k < count; k++) {
      const u = u0 + k / count;
      while (u > cum && i < weights.length - 1) cum += weights[++i] / total;
      out[k] = i;
    }
    return out;
  }
  // multinomial: sorted uniforms (by normalised exponential spacings) swept against the cumulative weights
  const e = new Float64Array(count + 1);
  let acc = 0;
  for (let k = 0; k <= count; k++) {
    acc += -Math.log(rng.open());
    e[k] = acc;
  }
  let cum = weights[0] / total;
  let i = 0;
  for (let k = 0; k < count; k++) {
    const u = e[k] / e[count];
    while (u > cum && i < weights.length - 1) cum += weights[++i] / total;
    out[k] = i;
  }
  return out;
}
