import type { Model } from './model.js';

/**
 * Samplers work in normalised control coordinates z: u = center + scale * z,
 * with center and scale the midpoint and half-width of each bounded control
 * (0 and 1 for unbounded ones). Step sizes and prior widths then mean the
 * same thing for a torque in [-1, 1] and a pusher speed in [-0.1, 0.1] m/s.
 */
export interface ControlScaling {
  center: Float64Array;
  scale: Float64Array;
}

export function isIdentityScaling(s: ControlScaling): boolean {
  return s.center.every((c) => c === 0) && s.scale.every((v) => v === 1);
}

export function controlScaling(model: Model): ControlScaling {
  const { lower, upper } = model.controlLimits;
  const bounded = (j: number) => Number.isFinite(lower[j]) && Number.isFinite(upper[j]);
  return {
    center: Float64Array.from(lower, (lo, j) => (bounded(j) ? (lo + upper[j]) / 2 : 0)),
    scale: Float64Array.from(lower, (lo, j) => (bounded(j) ? (upper[j] - lo) / 2 : 1)),
  };
}

export function toControls(z: Float64Array, s: ControlScaling): Float64Array {
  const m = s.center.length;
  const out = new Float64Array(z.length);
  for (let k = 0; k < z.length; k += m) for (let j = 0; j < m; j++) out[k + j] = s.center[j] + s.scale[j] * z[k + j];
  return out;
}

export function toNormalised(u: ArrayLike<number>, s: ControlScaling): Float64Array {
  const m = s.center.length;
  const out = new Float64Array(u.length);
  for (let k = 0; k < u.length; k += m) for (let j = 0; j < m; j++) out[k + j] = (u[k + j] - s.center[j]) / s.scale[j];
  return out;
}

/** Which coordinates of a control sequence (k, in steps x controls) are bounded: those clipped to [-1, 1] in normalised units. */
export function boundedCoordinates(model: Model): (k: number) => boolean {
  const m = model.controlDim;
  const { lower, upper } = model.controlLimits;
  return (k) => Number.isFinite(lower[k % m]) && Number.isFinite(upper[k % m]);
}
