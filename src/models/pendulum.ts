import { add, asin, clamp, cos, div, mul, Scalar, sin, sq, sub } from '../expr/expr.js';
import { num } from '../params.js';
import { angleError, defineModel } from './model.js';

/** The goal region's half-widths along theta, omega: the region's test and its plotted bands read the same numbers. */
const GOAL_HALF_WIDTHS = [0.1, 0.5] as const;

/**
 * Torque-limited pendulum, discrete variational (SO(2)) integrator, as in the
 * certifiable trajectory optimisation pendulum the TSMC paper follows.
 * State [theta, phi]: theta = 0 hangs down; phi is the angle increment over
 * one step (angular velocity is phi / dtS). Control u is dimensionless:
 * torque = umax * clip(u, -1, 1).
 */
export const pendulum = defineModel({
  name: 'pendulum',
  summary: 'variational-integrator pendulum swing-up (theta=0 hangs down; omega = phi/dtS)',
  stateNames: ['theta', 'phi'],
  physicalUnits: ['rad', 'rad/s'],
  sensor: { kind: 'joints', joints: ['theta'] },
  // theta = 0 hangs down
  sketch: ([theta], p) => [[0, 0], [p.l * Math.sin(theta), -p.l * Math.cos(theta)]],
  controlNames: ['u'],
  controlUnits: ['× umax'],
  params: {
    m: num(1, 'bob mass [kg]', { min: 1e-6 }),
    l: num(1, 'rod length [m]', { min: 1e-6 }),
    b: num(0.1, 'viscous damping [N m s]', { min: 0 }),
    g: num(9.8, 'gravity [m/s^2]', { min: 0 }),
    umax: num(5, 'torque at |u| = 1 [N m]', { min: 0 }),
    dtS: num(0.1, 'time step [s]', { min: 1e-6 }),
    horizon: num(30, 'planning horizon [steps]', { min: 1, max: 10000, integer: true }),
  },
  x0: [0.1, 0],
  angles: ['theta'],
  massParams: ['m'],
  tuning: {
    // A 2 s horizon, not the offline 3 s: near the upright an open-loop plan
    // diverges like exp(sqrt(g/l) t), so with noise the last second of a 3 s
    // plan is noise and the shifted plan is a poor warm start (plan cost at the
    // upright ~1 instead of ~0.03, and TSMC falls into swing-around minima).
    model: { horizon: 20 },
    planners: {
      // white noise at PO-MPC's sigmaMax = 2 chatters and cannot hold the upright; smooth noise and a carried-over sigma can
      mppi: { samples: 1024, iterations: 8, temperature: 0.01, sigmaMax: 0.5, noiseCorrelation: 0.9, sigmaWarmStart: 'carry' },
      tsmc: { lambda: 0.1, stepSize: 0.2, particles: 64, targetAcceptance: 0.75 },
      // sharp weights (eta 0.01 against stage costs of ~1-10) and wide draws: with 16 particles the planner must find a good action, not average many
      spo: { eta: 0.01, policyStdScale: 5 },
      // the pendulum's learned Q (a PO-MPC prior) misleads the twisted proposal: 19/20 at alpha 0, 16/20 at 0.03, 4-7/20 at 0.1 (docs/results.md)
      trtsmc: { eta: 0.01, policyStdScale: 5, atoms: 8, alpha: 0 },
    },
    // Table S-I of the TSMC paper (step sizes in normalised units here)
    solve: { lambda: 0.1, stepSize: 0.2 },
  },
  goal: [Math.PI, 0],
  controlLimits: { lower: [-1], upper: [1] },
  // parameter arithmetic through the helpers (numbers fold as plain arithmetic would): `identify` makes parameters symbols
  step([theta, phi], [u], _w, p) {
    const inertiaOverDt = div(mul(mul(p.m, p.l), p.l), p.dtS);
    const thetaNext = add(theta, phi);
    const torque = mul(mul(p.dtS, p.umax), clamp(u, -1, 1));
    const numerator = add(sub(mul(inertiaOverDt, sin(phi)), mul(mul(mul(mul(p.dtS, p.m), p.g), p.l), sin(thetaNext))), torque);
    const sinPhiNext = div(numerator, add(inertiaOverDt, p.b));
    return [thetaNext, asin(clamp(sinPhiNext, -1, 1))];
  },
  stageCost(x, [u], _uPrev, ref) {
    return add(sq(u), stateCost(x, ref));
  },
  terminalCost(x, ref) {
    return stateCost(x, ref);
  },
  goalRegion: {
    doc: '|theta - pi| < 0.1 rad and |omega| < 0.5 rad/s, held 5 s',
    holdS: 5,
    halfWidths: GOAL_HALF_WIDTHS,
    contains: ([theta, phi], [rTheta], p) => Math.abs(angleError(theta, rTheta)) < GOAL_HALF_WIDTHS[0] && Math.abs(phi / p.dtS) < GOAL_HALF_WIDTHS[1],
  },
  physical: {
    names: ['theta', 'omega'],
    angles: ['theta'],
    // phi is the increment to the next step's angle; predicting it to second
    // order under gravity and damping (free motion) matches a physical
    // (theta, omega) far better than omega * dtS at this coarse step.
    toPhysical: ([theta, phi], p) => [theta, div(add(phi, gravityTerm(theta, p)), dampedStep(p))],
    fromPhysical: ([theta, omega], p) => [theta, omega * dampedStep(p) - (gravityTerm(theta, p) as number)],
  },

});

/** Chordal distance on SO(2) for theta and phi; with ref = [pi, 0] this is
 * (cos th + 1)^2 + sin^2 th + (cos phi - 1)^2 + sin^2 phi exactly. */
function stateCost([theta, phi]: Scalar[], [rTheta, rPhi]: Scalar[]): Scalar {
  return add(
    add(sq(sub(cos(theta), cos(rTheta))), sq(sub(sin(theta), sin(rTheta)))),
    add(sq(sub(cos(phi), cos(rPhi))), sq(sub(sin(phi), sin(rPhi)))),
  );
}

/** (dt^2 / 2) (g / l) sin(theta): gravity's share of one step's angle increment. */
function gravityTerm(theta: Scalar, p: { g: number; l: number; dtS: number }): Scalar {
  return mul(0.5 * p.dtS * p.dtS * (p.g / p.l), sin(theta));
}

/** dt (1 - b dt / (2 m l^2)): the increment per unit of angular velocity under damping. */
function dampedStep(p: { b: number; m: number; l: number; dtS: number }): number {
  return p.dtS * (1 - (p.b * p.dtS) / (2 * p.m * p.l * p.l));
}
