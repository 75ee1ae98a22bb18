import { wgsl } from '../expr/emit.js';
import { InputError } from '../input-error.js';
import { goalLqr, YARDSTICK_LQR_WEIGHTS } from '../models/lqr.js';
import type { Model } from '../models/model.js';

/**
 * A balance catch at the goal, part of a feedback policy: the LQR at the goal
 * takes over from the network inside an ellipsoid around it,
 *
 *   u = (1 - g) pi_theta(x) + g sat(uEq - K e),  g = sigmoid(steepness (1 - sum_i (e_i / r_i)^2)),
 *
 * e = x - goal with angles wrapped, sat the control limits. Learned swing-ups
 * arrive near an unstable upright but none of this project's trained networks
 * learned to hold it (docs/results.md, issue 23): the catch is the classic
 * swing-up-then-balance split (Spong's acrobot), with the swing-up trained
 * by TSMC through the closed loop that contains the catch, so the training
 * sees where the balance takes over. The gate is smooth so the closed loop
 * keeps an exact gradient; `steepness` makes it nearly a switch.
 */
export interface PolicyCatch {
  /** K, rows: controls (model units: u = uEq - K e) */
  gain: number[][];
  uEq: number[];
  /** the gate's half-axes per state, model units */
  radii: number[];
  steepness: number;
}

/** g is 0.99995 at the goal, 0.5 on the ellipsoid and under 0.05 beyond 1.14 times its radii: nearly a switch, still differentiable. */
export const CATCH_STEEPNESS = 10;

/** The catch for a model at its goal: the LQR of `bench lqr`'s yardstick (YARDSTICK_LQR_WEIGHTS). */
export function goalCatch(model: Model, radii: readonly number[], what: string): PolicyCatch {
  if (radii.length !== model.stateDim || !radii.every((r) => r > 0 && Number.isFinite(r))) {
    throw new InputError(`${what}: the catch needs ${model.stateDim} positive radii, got [${radii.join(', ')}]`);
  }
  const uEq = new Array<number>(model.controlDim).fill(0);
  let K: number[][];
  try {
    K = goalLqr(model, uEq, new Array<number>(model.stateDim).fill(YARDSTICK_LQR_WEIGHTS.state), new Array<number>(model.controlDim).fill(YARDSTICK_LQR_WEIGHTS.control)).K;
  } catch (e) {
    throw new InputError(`${what}: the catch needs the LQR at ${model.name}'s goal: ${(e as Error).message}`);
  }
  return { gain: K, uEq, radii: [...radii], steepness: CATCH_STEEPNESS };
}

/** Why a stored catch cannot be used for n states and m controls (undefined: it can). */
export function catchProblem(c: unknown, n: number, m: number): string | undefined {
  const finite = (v: unknown, length: number) => Array.isArray(v) && v.length === length && v.every((x) => typeof x === 'number' && Number.isFinite(x));
  const k = c as Partial<PolicyCatch> | null;
  if (typeof k !== 'object' || k === null) return 'is not an object';
  if (!Array.isArray(k.gain) || k.gain.length !== m || !k.gain.every((row) => finite(row, n))) return `gain must be ${m} rows of ${n} finite numbers`;
  if (!finite(k.uEq, m)) return `uEq must be ${m} finite numbers`;
  if (!finite(k.radii, n) || !k.radii!.every((r) => r > 0)) return `radii must be ${n} positive numbers`;
  if (!(typeof k.steepness === 'number' && k.steepness > 0 && Number.isFinite(k.steepness))) return 'steepness must be a positive number';
  return undefined;
}

/**
 * The gate g at state x (offset xo in xs): writes the error e (angles
 * wrapped into (-pi, pi]) and returns g.
 */
export function catchGate(c: PolicyCatch, angle: readonly boolean[], xs: ArrayLike<number>, xo: number, reference: ArrayLike<number>, e: Float64Array): number {
  let q = 0;
  for (let i = 0; i < e.length; i++) {
    const d = xs[xo + i] - reference[i];
    e[i] = angle[i] ? Math.atan2(Math.sin(d), Math.cos(d)) : d;
    q += (e[i] / c.radii[i]) ** 2;
  }
  return 1 / (1 + Math.exp(-c.steepness * (1 - q)));
}

/** dg/de_i for the gate value g at error e. */
export function catchGateSlope(c: PolicyCatch, g: number, e: ArrayLike<number>, i: number): number {
  return -c.steepness * g * (1 - g) * 2 * e[i] / c.radii[i] ** 2;
}

/** How a policy's controls are bounded (a policy's shape or a prior's meta): bounded ones within center +- scale. */
export interface ControlLimits {
  bounded: readonly boolean[];
  controlCenter: ArrayLike<number>;
  controlScale: ArrayLike<number>;
}

/** Control j's limits [lower, upper] in model units (unbounded: the whole line). */
export function controlLimits(at: ControlLimits, j: number): [number, number] {
  return at.bounded[j] ? [at.controlCenter[j] - at.controlScale[j], at.controlCenter[j] + at.controlScale[j]] : [-Infinity, Infinity];
}

/** Control j of the LQR, saturated at its limits (model units), and whether it saturated. */
export function catchControl(c: PolicyCatch, e: ArrayLike<number>, j: number, limits: ControlLimits): { u: number; saturated: boolean } {
  const [lower, upper] = controlLimits(limits, j);
  let u = c.uEq[j];
  const row = c.gain[j];
  for (let i = 0; i < row.length; i++) u -= row[i] * e[i];
  if (u > upper) return { u: upper, saturated: true };
  if (u < lower) return { u: lower, saturated: true };
  return { u, saturated: false };
}

/** Where a WGSL catch reads the state and the goal, and how the controls are bounded (a policy's shape or a prior's meta). */
export interface CatchWgslContext extends ControlLimits {
  angle: readonly boolean[];
  /** the WGSL of state coordinate i, and of the goal's */
  x: (i: number) => string;
  r: (i: number) => string;
}

/**
 * The catch as WGSL statements, one source for every shader that has it (the
 * prior's mean, the closed loop trained on the GPU): `ce{i}` the error (angles
 * wrapped), `cg` the gate, `clq{j}` each control's LQR value saturated at its
 * limits (model units) and `csat{j}` whether it was, as catchGate and
 * catchControl compute them.
 */
export function catchWgsl(c: PolicyCatch, at: CatchWgslContext): string[] {
  const f32 = (v: number) => wgsl.literal(v);
  const L: string[] = [];
  c.radii.forEach((_, i) => {
    const d = `(${at.x(i)} - ${at.r(i)})`;
    L.push(`let ce${i} = ${at.angle[i] ? `atan2(sin${d}, cos${d})` : d};`);
  });
  const q = c.radii.map((radius, i) => `ce${i} * ce${i} * ${f32(1 / radius ** 2)}`).join(' + ');
  // the exponent clamped: f32's exp overflows past 88 (and WGSL may assume no infinity), where the gate is 0 or 1 to f32 precision anyway
  L.push(`let cg = 1.0 / (1.0 + exp(clamp(${f32(-c.steepness)} * (1.0 - (${q})), -80.0, 80.0)));`);
  c.gain.forEach((row, j) => {
    L.push(`let craw${j} = ${[f32(c.uEq[j]), ...row.map((k, i) => `${f32(-k)} * ce${i}`)].join(' + ')};`);
    if (at.bounded[j]) {
      const [lo, hi] = controlLimits(at, j);
      L.push(`let clq${j} = clamp(craw${j}, ${f32(lo)}, ${f32(hi)}); let csat${j} = craw${j} > ${f32(hi)} || craw${j} < ${f32(lo)};`);
    } else {
      L.push(`let clq${j} = craw${j}; let csat${j} = false;`);
    }
  });
  return L;
}
