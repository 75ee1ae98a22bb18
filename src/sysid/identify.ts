import { emitBody, javascript } from '../expr/emit.js';
import { Expr, Graph, Scalar, solveSpd } from '../expr/expr.js';
import { gradient } from '../expr/grad.js';
import { InputError } from '../input-error.js';
import { blockTridiagonalFactor, invert, matMul } from '../linalg.js';
import { fromPhysical, Model, ParamValues, physicalAngles, resolveModel, toPhysical } from '../models/model.js';
import type { ControlLog } from './log.js';

/*
 * System identification with the true states as unknowns (errors in
 * variables). Predicting each logged interval from the state measured at
 * its start puts the measurement noise into what the prediction starts
 * from; a least-squares fit then reads part of that noise as dynamics (the
 * damping comes out too high: attenuation). Here the unknowns are the
 * parameters and the plant's physical state at every logged time; the cost
 * weighs each measurement's distance to its state by the measurement noise
 * and each state's distance to the model's prediction from the state
 * before (through `substeps` model steps under the logged command, the
 * fine step the log came from) by the process noise. The noise levels come
 * from the log: the one-step prediction errors from measured states have
 * variance Q + R + A R A' and lag-one covariance -R A' (a measurement
 * enters two successive errors with opposite signs), re-read at the fitted
 * parameters until they settle. Gauss-Newton (Levenberg-Marquardt) on exact
 * Jacobians: the model's step is built with the parameters as symbols and
 * its derivatives carried through the substeps. The states' normal matrix
 * is block tridiagonal (a state meets only its neighbours) and is
 * eliminated block by block, leaving a p x p system for the parameters whose
 * inverse, scaled by the fit's residual variance, is their covariance; a
 * parameter the log cannot fix is said to be so instead of given a number.
 */

export interface IdentifySettings {
  /** the model parameters to fit */
  keys: string[];
  /** model steps per logged interval (the simulator's substeps; a real plant's: enough to be continuous) */
  substeps: number;
}

export interface ParameterEstimate {
  key: string;
  nominal: number;
  /** null: not identifiable from this log (see reason) */
  estimate: number | null;
  standardError: number | null;
  interval95: [number, number] | null;
  reason?: string;
}

export interface IdentifyResult {
  estimates: ParameterEstimate[];
  periodS: number;
  /** logged intervals used, and the unbroken stretches of the log they lie in */
  intervals: number;
  segments: number;
  iterations: number;
  /** the noise read from the log, per physical state: measurement std, and process noise std per sqrt(second) */
  noise: { measurementStd: number[]; processStdPerSqrtS: number[] };
  /** root mean square of the normalised one-step prediction errors from measured states, nominal and fitted */
  rmsBefore: number;
  rmsAfter: number;
  /** for the plot: the estimated states at the fitted parameters against the log */
  trajectory: { timesS: number[]; measured: number[][]; estimated: number[][] };
}

/** The smallest relative standard error reported (time stamps in nanoseconds fix the period to about 1e-7 of it). */
const RESOLUTION_FLOOR = 1e-6;

/** A 95% interval wider than this share of the value says the log does not fix the parameter. */
const MAX_RELATIVE_HALF_WIDTH = 0.5;

/** A noise variance is never set below this share of the one-step errors' variance (a noise-free log: the other noise decides). */
const NOISE_FLOOR = 1e-6;

/** Rounds of (read the noise, fit) at most; they stop once the noise levels move less than NOISE_SETTLED. */
const NOISE_ROUNDS = 200;
const NOISE_SETTLED = 0.002;

type SensitivityStep = (x: readonly number[], u: readonly number[], theta: readonly number[]) => number[];

/** The model's step with `keys` as symbols: x' and its Jacobians A = dx'/dx, B = dx'/dtheta, compiled to one function. */
function sensitivityStep(model: Model, keys: readonly string[]): SensitivityStep {
  const { def, stateDim: n, controlDim: m } = model;
  const g = new Graph();
  const x = g.inputs('x', n);
  const u = g.inputs('u', m);
  const theta = g.inputs('th', keys.length);
  const params: Record<string, Scalar> = { ...model.params };
  keys.forEach((k, i) => (params[k] = theta[i]));
  const notSymbolic = () => new InputError(`${model.name} computes with ${keys.join(', ')} outside the expression helpers (plain * or + on a parameter), so its derivatives cannot be formed: write that arithmetic with add/mul/div in the model to identify it`);
  let rows: Scalar[][];
  let next: Scalar[];
  try {
    // plain arithmetic on a symbol gives NaN or text, which the helpers then trip over
    next = def.step(x, u, new Array<number>(model.noiseDim).fill(0), params as unknown as ParamValues<string>);
    rows = next.map((xi) => {
      if (!(xi instanceof Expr) && !(typeof xi === 'number' && Number.isFinite(xi))) throw notSymbolic();
      return gradient(xi, [...x, ...theta]);
    });
  } catch (e) {
    if (e instanceof InputError) throw e;
    throw notSymbolic();
  }
  const outputs = [...next, ...rows.flatMap((r) => r.slice(0, n)), ...rows.flatMap((r) => r.slice(n))];
  for (const [i, k] of keys.entries()) {
    if (rows.every((r) => r[n + i] === 0)) throw new InputError(`${model.name}.${k} does not enter the dynamics (a cost, goal or step parameter): no log can fix it`);
  }
  let body;
  try {
    body = emitBody(outputs, javascript);
  } catch {
    throw notSymbolic();
  }
  const source = [
    '(function (X, U, TH) {', '"use strict";',
    ...x.map((e, i) => `const ${(e as Expr).name} = X[${i}];`),
    ...u.map((e, i) => `const ${(e as Expr).name} = U[${i}];`),
    ...theta.map((e, i) => `const ${(e as Expr).name} = TH[${i}];`),
    ...body.code, `return [${body.refs.join(', ')}];`, '})',
  ].join('\n');
  return (0, eval)(source) as SensitivityStep;
}

/** An unbroken stretch of the log: states first .. first + intervals, each interval with its command. */
interface Segment { first: number; intervals: number }

/** Logged intervals at the log's period, each with the command held in it; the stretches of usable intervals. */
function alignLog(log: ControlLog): { periodS: number; commands: number[][]; segments: Segment[] } {
  const { timesS } = log;
  if (timesS.length < 3) throw new InputError(`the log has ${timesS.length} states: identification needs a log of many`);
  const gaps = timesS.slice(1).map((t, i) => t - timesS[i]).sort((a, b) => a - b);
  const periodS = gaps[Math.floor(gaps.length / 2)];
  if (!(periodS > 0)) throw new InputError('the log\'s state times do not advance');
  const commands: number[][] = [];
  let c = -1;
  for (let k = 0; k + 1 < timesS.length; k++) {
    // the command in force over [t_k, t_k+1): the last one sent by half a period after the state (the controller answers each state)
    while (c + 1 < log.commands.length && log.commands[c + 1].timeS <= timesS[k] + 0.5 * periodS) c++;
    commands.push(c >= 0 ? log.commands[c].u : []);
  }
  const usable = (k: number) => commands[k].length > 0 && Math.abs(timesS[k + 1] - timesS[k] - periodS) <= 0.1 * periodS;
  const segments: Segment[] = [];
  for (let k = 0; k < commands.length; k++) {
    if (!usable(k)) continue;
    const last = segments.at(-1);
    if (last && last.first + last.intervals === k) last.intervals++;
    else segments.push({ first: k, intervals: 1 });
  }
  return { periodS, commands, segments };
}

/** One logged interval predicted from physical state y: the state at its end, and its Jacobians D (by y) and P (by the parameters). */
interface Prediction { next: number[]; D: number[][]; P: number[][] }

/** Fits `settings.keys` of the model to the log; `base` is the model as the user runs it (its other parameters held). */
export function identify(base: Model, log: ControlLog, settings: IdentifySettings): IdentifyResult {
  const { keys, substeps } = settings;
  const { periodS, commands, segments } = alignLog(log);
  const intervals = segments.reduce((s, g) => s + g.intervals, 0);
  if (intervals < keys.length + 2) throw new InputError(`the log gives ${intervals} usable intervals (a state, the command after it, the next state one period on); fitting ${keys.length} parameters needs at least ${keys.length + 2} (a longer log)`);
  // the model as the log's plant steps it: substeps per logged interval
  const fine = resolveModel(base.def, { ...base.params, dtS: periodS / substeps }, 'identify');
  const step = sensitivityStep(fine, keys);
  const n = fine.stateDim;
  const p = keys.length;
  const d = log.states[0].length;
  const angles = physicalAngles(fine);
  const wrap = (v: number, i: number) => (angles[i] ? Math.atan2(Math.sin(v), Math.cos(v)) : v);
  const nominal = keys.map((k) => fine.params[k]);
  const limits = keys.map((k) => fine.def.params[k]);
  const modelAt = (theta: readonly number[]) => resolveModel(fine.def, { ...fine.params, ...Object.fromEntries(keys.map((k, i) => [k, theta[i]])) }, 'identify');

  const predict = (model: Model, theta: readonly number[], y: readonly number[], u: readonly number[]): Prediction => {
    let x = fromPhysical(model, y);
    // M = dx/dy and S = dx/dtheta carried through the substeps: M <- A M, S <- A S + B
    // a model without a physical read-out is stepped in the logged coordinates
    const identity = (size: number) => Array.from({ length: size }, (_, i) => Array.from({ length: size }, (__, k) => (i === k ? 1 : 0)));
    let M = model.def.physical ? coordinateJacobian((v) => fromPhysical(model, v), y, x) : identity(n);
    let S = Array.from({ length: n }, () => new Array<number>(p).fill(0));
    for (let s = 0; s < substeps; s++) {
      const out = step(x, u, theta);
      const A = (i: number, k: number) => out[n + i * n + k];
      M = M.map((_, i) => Array.from({ length: d }, (__, c) => {
        let v = 0;
        for (let k = 0; k < n; k++) v += A(i, k) * M[k][c];
        return v;
      }));
      S = S.map((_, i) => Array.from({ length: p }, (__, c) => {
        let v = out[n + n * n + i * p + c];
        for (let k = 0; k < n; k++) v += A(i, k) * S[k][c];
        return v;
      }));
      x = out.slice(0, n);
    }
    const next = toPhysical(model, x);
    const H = model.def.physical ? coordinateJacobian((v) => toPhysical(model, v), x, next) : identity(n);
    return { next, D: matMul(H, M), P: matMul(H, S) };
  };

  /** Every interval predicted from the measured state at its start. */
  const fromMeasured = (theta: readonly number[]) => {
    const model = modelAt(theta);
    return segments.map((g) => Array.from({ length: g.intervals }, (_, j) => {
      const k = g.first + j;
      const prediction = predict(model, theta, log.states[k], commands[k]);
      return { ...prediction, error: prediction.next.map((v, i) => wrap(log.states[k + 1][i] - v, i)) };
    }));
  };

  /** The cost and its Gauss-Newton normal equations at (theta, states): blocks per segment for the states, dense for the parameters. */
  const evaluate = (theta: readonly number[], states: number[][][], noise: { R: number[]; Q: number[] }, withNormal: boolean) => {
    const model = modelAt(theta);
    const wR = noise.R.map((v) => 1 / v);
    const wQ = noise.Q.map((v) => 1 / v);
    let cost = 0;
    const Htt = Array.from({ length: p }, () => new Array<number>(p).fill(0));
    const gt = new Array<number>(p).fill(0);
    const blocks = segments.map((g, s) => {
      const count = g.intervals + 1;
      const zero = (cols: number) => Array.from({ length: d }, () => new Array<number>(cols).fill(0));
      const diagonal = Array.from({ length: count }, () => zero(d));
      const lower = Array.from({ length: g.intervals }, () => zero(d));
      const Hxt = Array.from({ length: count }, () => zero(p));
      const gx = Array.from({ length: count }, () => new Array<number>(d).fill(0));
      const Y = states[s];
      const measurementErrors: number[][] = [];
      const processErrors: { r: number[]; D: number[][] }[] = [];
      for (let j = 0; j < count; j++) {
        const measured = log.states[g.first + j];
        measurementErrors.push(Y[j].map((v, i) => wrap(v - measured[i], i)));
        for (let i = 0; i < d; i++) {
          const r = measurementErrors[j][i];
          cost += wR[i] * r * r;
          diagonal[j][i][i] += wR[i];
          gx[j][i] += wR[i] * r;
        }
      }
      for (let j = 0; j < g.intervals; j++) {
        const { next, D, P } = predict(model, theta, Y[j], commands[g.first + j]);
        const r = next.map((v, i) => wrap(Y[j + 1][i] - v, i));
        processErrors.push({ r, D });
        for (let i = 0; i < d; i++) cost += wQ[i] * r[i] * r[i];
        if (!withNormal) continue;
        // r depends on Y[j+1] (identity), Y[j] (-D) and theta (-P)
        for (let a = 0; a < d; a++) {
          diagonal[j + 1][a][a] += wQ[a];
          gx[j + 1][a] += wQ[a] * r[a];
          for (let c = 0; c < p; c++) Hxt[j + 1][a][c] -= wQ[a] * P[a][c];
          for (let b = 0; b < d; b++) {
            lower[j][a][b] -= wQ[a] * D[a][b];
            let v = 0;
            for (let i = 0; i < d; i++) v += D[i][a] * wQ[i] * D[i][b];
            diagonal[j][a][b] += v;
          }
          let ga = 0;
          for (let i = 0; i < d; i++) ga -= D[i][a] * wQ[i] * r[i];
          gx[j][a] += ga;
          for (let c = 0; c < p; c++) {
            let v = 0;
            for (let i = 0; i < d; i++) v += D[i][a] * wQ[i] * P[i][c];
            Hxt[j][a][c] += v;
          }
        }
        for (let a = 0; a < p; a++) {
          for (let i = 0; i < d; i++) gt[a] -= P[i][a] * wQ[i] * r[i];
          for (let b = 0; b < p; b++) for (let i = 0; i < d; i++) Htt[a][b] += P[i][a] * wQ[i] * P[i][b];
        }
      }
      return { diagonal, lower, Hxt, gx, measurementErrors, processErrors };
    });
    return { cost, blocks, Htt, gt };
  };

  /**
   * The Gauss-Newton step with the diagonal raised by mu (Levenberg-Marquardt,
   * the diagonal as the metric), or the parameters' reduced normal matrix
   * alone (mu = 0, for the covariance). The states are eliminated segment by
   * segment: (Htt - Htx Hxx^-1 Hxt) dtheta = -gt + Htx Hxx^-1 gx.
   */
  const solve = (normal: ReturnType<typeof evaluate>, mu: number) => {
    const raise = (m: number[][]) => m.map((row, i) => row.map((v, j) => (i === j ? v + mu * Math.max(v, 1e-300) : v)));
    const reduced = raise(normal.Htt);
    const rhs = normal.gt.map((v) => -v);
    const perSegment = [];
    for (const block of normal.blocks) {
      const factor = blockTridiagonalFactor(block.diagonal.map(raise), block.lower);
      if (!factor) return undefined;
      const z = factor.solve(block.gx);
      const X = Array.from({ length: p }, (_, c) => factor.solve(block.Hxt.map((rows) => rows.map((row) => row[c]))));
      for (let a = 0; a < p; a++) {
        for (let j = 0; j < block.Hxt.length; j++) {
          for (let i = 0; i < d; i++) {
            const h = block.Hxt[j][i][a];
            rhs[a] += h * z[j][i];
            for (let b = 0; b < p; b++) reduced[a][b] -= h * X[b][j][i];
          }
        }
      }
      perSegment.push({ z, X });
    }
    const dTheta = mu > 0 ? solveSpd(reduced, rhs) as number[] : new Array<number>(p).fill(0);
    const dStates = perSegment.map(({ z, X }) => z.map((zj, j) => zj.map((v, i) => -v - X.reduce((s, Xc, c) => s + Xc[j][i] * dTheta[c], 0))));
    return { dTheta, dStates, reduced };
  };

  /**
   * The noise variances that explain the fit (an EM step, the states'
   * posterior taken Gaussian about the fit): R_i the mean of (state -
   * measurement)_i^2 + Var(state_i), Q_i the mean of (state' - prediction)_i^2
   * + Var(state' - D state)_i, the variances from the states' normal matrix's
   * inverse (its diagonal blocks and those beside them).
   */
  const expectedNoise = (normal: ReturnType<typeof evaluate>) => {
    const R = new Array<number>(d).fill(0);
    const Q = new Array<number>(d).fill(0);
    let measurements = 0;
    let processes = 0;
    for (const block of normal.blocks) {
      const factor = blockTridiagonalFactor(block.diagonal, block.lower);
      if (!factor) return undefined;
      const S = factor.inverseBlocks();
      block.measurementErrors.forEach((e, j) => {
        measurements++;
        for (let i = 0; i < d; i++) R[i] += e[i] ** 2 + S.diagonal[j][i][i];
      });
      block.processErrors.forEach(({ r, D }, j) => {
        processes++;
        for (let i = 0; i < d; i++) {
          let v = r[i] ** 2 + S.diagonal[j + 1][i][i];
          for (let l = 0; l < d; l++) {
            v -= 2 * D[i][l] * S.lower[j][i][l];
            for (let m = 0; m < d; m++) v += D[i][l] * S.diagonal[j][l][m] * D[i][m];
          }
          Q[i] += v;
        }
      });
    }
    const scale = halfVariance;
    return { R: R.map((v, i) => Math.max(NOISE_FLOOR * scale[i], v / measurements)), Q: Q.map((v, i) => Math.max(NOISE_FLOOR * scale[i], v / processes)) };
  };

  let theta = [...nominal];
  // the states start at their measurements
  let states = segments.map((g) => Array.from({ length: g.intervals + 1 }, (_, j) => [...log.states[g.first + j]]));
  // a start for the noise: half the one-step errors' variance each (the rounds below find the split)
  const start = fromMeasured(theta).flat();
  const halfVariance = Array.from({ length: d }, (_, i) => Math.max(1e-300, start.reduce((s, e) => s + e.error[i] ** 2, 0) / (2 * start.length)));
  let noise = { R: [...halfVariance], Q: [...halfVariance] };
  let iterations = 0;
  for (let round = 0; round < NOISE_ROUNDS; round++) {
    let mu = 1e-3;
    let current = evaluate(theta, states, noise, true);
    for (let iteration = 0; iteration < 50; iteration++, iterations++) {
      let accepted = false;
      while (mu < 1e12) {
        const step = solve(current, mu);
        if (step) {
          const trialTheta = theta.map((t, i) => clampTo(limits[i], t + step.dTheta[i]));
          const trialStates = states.map((Y, s) => Y.map((y, j) => y.map((v, i) => v + step.dStates[s][j][i])));
          const next = evaluate(trialTheta, trialStates, noise, true);
          if (Number.isFinite(next.cost) && next.cost < current.cost) {
            const change = Math.max(...trialTheta.map((t, i) => Math.abs(t - theta[i]) / Math.max(Math.abs(theta[i]), 1e-12)));
            const converged = current.cost - next.cost <= 1e-12 * current.cost || change < 1e-9;
            theta = trialTheta;
            states = trialStates;
            current = next;
            mu = Math.max(mu / 10, 1e-12);
            accepted = !converged;
            break;
          }
        }
        mu *= 10;
      }
      if (!accepted) break;
    }
    // `current` is the fit's own evaluation: (theta, states) under this round's noise
    const reread = expectedNoise(current);
    if (!reread) break;
    const moved = Math.max(...reread.R.map((v, i) => Math.abs(Math.sqrt(v / noise.R[i]) - 1)), ...reread.Q.map((v, i) => Math.abs(Math.sqrt(v / noise.Q[i]) - 1)));
    noise = reread;
    if (moved < NOISE_SETTLED) break;
  }

  // the covariance: the parameters' reduced normal matrix at the fit, inverted, times the residual variance per degree of freedom
  const final = evaluate(theta, states, noise, true);
  const reduced = solve(final, 0)?.reduced;
  const bread = reduced ? invertScaled(reduced) : undefined;
  const residuals = segments.reduce((s, g) => s + (2 * g.intervals + 1) * d, 0);
  const unknowns = segments.reduce((s, g) => s + (g.intervals + 1) * d, 0) + p;
  const scale = final.cost / Math.max(1, residuals - unknowns);
  const covariance = bread?.map((row) => row.map((v) => v * scale));
  const fitted = fromMeasured(theta).flat();
  const excited = keys.map((_, c) => fitted.some((e) => e.P.some((row) => row[c] !== 0)));
  const estimates: ParameterEstimate[] = keys.map((key, i) => {
    // a noise-free log fits to rounding: the floor is what stamps in nanoseconds and f64 arithmetic leave of any estimate
    const se = covariance ? Math.max(Math.sqrt(Math.max(0, covariance[i][i])), RESOLUTION_FLOOR * Math.abs(theta[i])) : NaN;
    const halfWidth = 1.96 * se;
    let reason: string | undefined;
    if (!excited[i]) reason = 'not identifiable: the log does not excite it (the predictions do not depend on it)';
    else if (!Number.isFinite(se)) reason = 'not identifiable: the log fixes only a combination of the parameters, not each one';
    else if (halfWidth > MAX_RELATIVE_HALF_WIDTH * Math.abs(theta[i])) reason = `not identifiable: too little excitation in the log (95% interval ±${(100 * halfWidth / Math.abs(theta[i])).toFixed(0)}% of the value)`;
    return reason
      ? { key, nominal: nominal[i], estimate: null, standardError: null, interval95: null, reason }
      : { key, nominal: nominal[i], estimate: theta[i], standardError: se, interval95: [theta[i] - halfWidth, theta[i] + halfWidth] };
  });

  // one-step prediction errors from measured states, each physical state in units of its typical error under the nominal model
  const before = start.map((e) => e.error);
  const typical = Array.from({ length: d }, (_, i) => before.map((e) => Math.abs(e[i])).sort((a, b) => a - b)[Math.floor(before.length / 2)] || 1);
  const rms = (errors: number[][]) => Math.sqrt(errors.reduce((s, e) => s + e.reduce((t, v, i) => t + (v / typical[i]) ** 2, 0), 0) / (errors.length * d));
  return {
    estimates,
    periodS,
    intervals,
    segments: segments.length,
    iterations,
    noise: { measurementStd: noise.R.map(Math.sqrt), processStdPerSqrtS: noise.Q.map((v) => Math.sqrt(v / periodS)) },
    rmsBefore: rms(before),
    rmsAfter: rms(fitted.map((e) => e.error)),
    trajectory: {
      timesS: segments.flatMap((g) => Array.from({ length: g.intervals + 1 }, (_, j) => log.timesS[g.first + j])),
      measured: segments.flatMap((g) => Array.from({ length: g.intervals + 1 }, (_, j) => log.states[g.first + j])),
      estimated: states.flat(),
    },
  };
}

/** The Jacobian of a change of coordinates `map` at `at` (where it gives `value`), by differences: a read-out, not the dynamics. */
function coordinateJacobian(map: (v: number[]) => number[], at: readonly number[], value: readonly number[]): number[][] {
  const columns = at.map((v, k) => {
    const h = 1e-7 * Math.max(1, Math.abs(v));
    return map(at.map((a, m) => (m === k ? a + h : a))).map((b, i) => (b - value[i]) / h);
  });
  return value.map((_, i) => columns.map((col) => col[i]));
}

function clampTo(def: { min?: number; max?: number }, v: number): number {
  return Math.min(def.max ?? Infinity, Math.max(def.min ?? -Infinity, v));
}

/**
 * The inverse of a small symmetric positive semi-definite matrix, or
 * undefined when it is singular to working precision (judged after scaling
 * by its diagonal, so parameters of different units compare fairly).
 */
function invertScaled(A: number[][]): number[][] | undefined {
  const d = A.map((row, i) => Math.sqrt(row[i]));
  if (d.some((v) => !(v > 0))) return undefined;
  const inverse = invert(A.map((row, i) => row.map((v, j) => v / (d[i] * d[j]))));
  // a unit diagonal whose inverse has entries beyond 1e10: the columns are dependent
  if (inverse.some((row) => row.some((v) => !Number.isFinite(v) || Math.abs(v) > 1e10))) return undefined;
  return inverse.map((row, i) => row.map((v, j) => v / (d[i] * d[j])));
}
