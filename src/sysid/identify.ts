import { emitBody, javascript } from '../expr/emit.js';
import { Expr, Graph, Scalar, solveSpd } from '../expr/expr.js';
import { gradient } from '../expr/grad.js';
import { InputError } from '../input-error.js';
import { invert } from '../linalg.js';
import { fromPhysical, Model, ParamValues, physicalAngles, resolveModel, toPhysical } from '../models/model.js';
import type { ControlLog } from './log.js';

/*
 * System identification by multi-step prediction error: the log is cut
 * into windows; each starts at a measured state and is simulated through
 * the model under the logged commands (at the fine step the log came from:
 * `substeps` model steps per logged interval), and the parameters minimise
 * the windows' squared prediction errors (Levenberg-Marquardt). The
 * Jacobian of every prediction with respect to the parameters is exact:
 * the model's step is built with the parameters as symbols, and forward
 * sensitivities S' = A S + B carry its derivatives through the window.
 * Uncertainty: the sandwich covariance clustered by blocks of windows
 * (overlapping windows' errors are correlated, and process noise correlates
 * a window's own), and a parameter
 * the log cannot fix is said to be so instead of given a number.
 */

export interface IdentifySettings {
  /** the model parameters to fit */
  keys: string[];
  /** logged intervals per prediction window */
  windowSteps: number;
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
  windows: number;
  iterations: number;
  /** root mean square of the normalised prediction errors, before and after */
  rmsBefore: number;
  rmsAfter: number;
  /** for the plot: each window's prediction at the fitted parameters against the log */
  prediction: { timesS: number[]; measured: number[][]; predicted: number[][] };
}

/** The smallest relative standard error reported (time stamps in nanoseconds fix the period to about 1e-7 of it). */
const RESOLUTION_FLOOR = 1e-6;

/** A 95% interval wider than this share of the value says the log does not fix the parameter. */
const MAX_RELATIVE_HALF_WIDTH = 0.5;

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

/** `cluster`: windows that overlap share one (their errors are correlated), for the covariance */
interface Window { start: number; steps: number; cluster: number }

/** Logged intervals at the log's period, each with the command held in it; windows of whole intervals that cross no gap. */
function alignLog(log: ControlLog, windowSteps: number): { periodS: number; commands: number[][]; windows: Window[] } {
  const { timesS } = log;
  if (timesS.length < windowSteps + 1) throw new InputError(`the log has ${timesS.length} states: at least ${windowSteps + 1} are needed for one window of ${windowSteps} steps (--window)`);
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
  // a window starts at every logged state: each measured state is a start once and a target windowSteps times
  const windows: Window[] = [];
  for (let start = 0; start + windowSteps < timesS.length; start++) {
    let ok = true;
    for (let k = start; k < start + windowSteps; k++) ok &&= usable(k);
    // a measured state ends one window and starts the next: blocks of 2 windowSteps starts share a cluster
    if (ok) windows.push({ start, steps: windowSteps, cluster: Math.floor(start / (2 * windowSteps)) });
  }
  return { periodS, commands, windows };
}

/** Fits `settings.keys` of the model to the log; `base` is the model as the user runs it (its other parameters held). */
export function identify(base: Model, log: ControlLog, settings: IdentifySettings): IdentifyResult {
  const { keys, windowSteps, substeps } = settings;
  const { periodS, commands, windows } = alignLog(log, windowSteps);
  if (windows.length < keys.length + 2) throw new InputError(`the log gives ${windows.length} usable windows of ${windowSteps} steps; fitting ${keys.length} parameters needs at least ${keys.length + 2} (a longer log, or a shorter --window)`);
  // the model as the log's plant steps it: substeps per logged interval
  const fine = resolveModel(base.def, { ...base.params, dtS: periodS / substeps }, 'identify');
  const step = sensitivityStep(fine, keys);
  const n = fine.stateDim;
  const p = keys.length;
  const angles = physicalAngles(fine);
  const nominal = keys.map((k) => fine.params[k]);
  const limits = keys.map((k) => fine.def.params[k]);

  /** Residuals (physical units, angles wrapped) and their Jacobian per window, at theta. */
  const evaluate = (theta: number[], withJacobian: boolean) => {
    const model = resolveModel(fine.def, { ...fine.params, ...Object.fromEntries(keys.map((k, i) => [k, theta[i]])) }, 'identify');
    const perWindow: { r: number[]; J: number[][] }[] = [];
    const predicted: number[][] = [];
    for (const w of windows) {
      let x = fromPhysical(model, log.states[w.start]);
      let S = Array.from({ length: n }, () => new Array<number>(p).fill(0));
      const r: number[] = [];
      const J: number[][] = [];
      for (let j = 0; j < w.steps; j++) {
        const u = commands[w.start + j];
        for (let s = 0; s < substeps; s++) {
          const out = step(x, u, theta);
          const A = (i: number, k: number) => out[n + i * n + k];
          const B = (i: number, k: number) => out[n + n * n + i * p + k];
          if (withJacobian) S = S.map((_, i) => Array.from({ length: p }, (__, c) => B(i, c) + S.reduce((sum, row, k) => sum + A(i, k) * row[c], 0)));
          x = out.slice(0, n);
        }
        const y = toPhysical(model, x);
        predicted.push(y);
        const measured = log.states[w.start + j + 1];
        y.forEach((v, i) => {
          const d = v - measured[i];
          r.push(angles[i] ? Math.atan2(Math.sin(d), Math.cos(d)) : d);
        });
        if (withJacobian) {
          // the physical map's Jacobian by differences (it is a read-out, not the dynamics)
          const H = physicalJacobian(model, x, y);
          for (let i = 0; i < y.length; i++) J.push(Array.from({ length: p }, (_, c) => H[i].reduce((sum, hik, k) => sum + hik * S[k][c], 0)));
        }
      }
      perWindow.push({ r, J });
    }
    return { perWindow, predicted };
  };

  // each physical state weighted by how well the nominal model predicts it (units differ: rad, rad/s)
  const start = evaluate(nominal, false);
  const dims = log.states[0].length;
  const weights = Array.from({ length: dims }, (_, i) => {
    const errors = start.perWindow.flatMap((w) => w.r.filter((_, k) => k % dims === i)).map(Math.abs).sort((a, b) => a - b);
    const typical = errors[Math.floor(errors.length / 2)] || 1;
    return 1 / typical;
  });
  const weigh = (perWindow: { r: number[]; J: number[][] }[]) => perWindow.map((w) => ({ r: w.r.map((v, k) => v * weights[k % dims]), J: w.J.map((row, k) => row.map((v) => v * weights[k % dims])) }));
  const cost = (perWindow: { r: number[] }[]) => perWindow.reduce((s, w) => s + w.r.reduce((t, v) => t + v * v, 0), 0);
  const count = windows.length * windowSteps * dims;

  let theta = [...nominal];
  let current = weigh(evaluate(theta, true).perWindow);
  let currentCost = cost(current);
  const costBefore = currentCost;
  let mu = 1e-3;
  let iterations = 0;
  for (; iterations < 50; iterations++) {
    const { JtJ, Jtr } = normalEquations(current);
    // Levenberg-Marquardt with the diagonal as the metric (parameters of different units)
    let accepted = false;
    while (mu < 1e12) {
      const damped = JtJ.map((row, i) => row.map((v, j) => (i === j ? v + mu * Math.max(v, 1e-300) : v)));
      const delta = solveSpd(damped, Jtr.map((v) => -v)) as number[];
      const trial = theta.map((t, i) => clampTo(limits[i], t + delta[i]));
      const next = weigh(evaluate(trial, true).perWindow);
      const nextCost = cost(next);
      if (Number.isFinite(nextCost) && nextCost < currentCost) {
        const change = Math.max(...trial.map((t, i) => Math.abs(t - theta[i]) / Math.max(Math.abs(theta[i]), 1e-12)));
        theta = trial;
        current = next;
        const converged = currentCost - nextCost <= 1e-12 * currentCost || change < 1e-9;
        currentCost = nextCost;
        mu = Math.max(mu / 10, 1e-12);
        accepted = !converged;
        break;
      }
      mu *= 10;
    }
    if (!accepted) break;
  }

  // sandwich covariance, clustered by window: bread (J'J)^-1, meat sum of (J_w' r_w)(J_w' r_w)'
  const { JtJ } = normalEquations(current);
  const bread = invertScaled(JtJ);
  const meat = Array.from({ length: p }, () => new Array<number>(p).fill(0));
  const scores = new Map<number, number[]>();
  current.forEach((w, i) => {
    const g = scores.get(windows[i].cluster) ?? new Array<number>(p).fill(0);
    for (let c = 0; c < p; c++) g[c] += w.J.reduce((s, row, k) => s + row[c] * w.r[k], 0);
    scores.set(windows[i].cluster, g);
  });
  for (const g of scores.values()) for (let a = 0; a < p; a++) for (let b = 0; b < p; b++) meat[a][b] += g[a] * g[b];
  const W = scores.size;
  const covariance = bread ? multiply(multiply(bread, meat), bread).map((row) => row.map((v) => (v * W) / Math.max(1, W - p))) : undefined;
  const excited = keys.map((_, c) => current.some((w) => w.J.some((row) => row[c] !== 0)));
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
  const final = evaluate(theta, false);
  return {
    estimates,
    periodS,
    windows: windows.length,
    iterations,
    rmsBefore: Math.sqrt(costBefore / count),
    rmsAfter: Math.sqrt(currentCost / count),
    prediction: {
      timesS: windows.flatMap((w) => Array.from({ length: w.steps }, (_, j) => log.timesS[w.start + j + 1])),
      measured: windows.flatMap((w) => Array.from({ length: w.steps }, (_, j) => log.states[w.start + j + 1])),
      predicted: final.predicted,
    },
  };
}

function physicalJacobian(model: Model, x: number[], y: number[]): number[][] {
  if (!model.def.physical) return y.map((_, i) => x.map((__, k) => (i === k ? 1 : 0)));
  const columns = x.map((v, k) => {
    const h = 1e-7 * Math.max(1, Math.abs(v));
    const bumped = toPhysical(model, x.map((xk, m) => (m === k ? xk + h : xk)));
    return bumped.map((b, i) => (b - y[i]) / h);
  });
  return y.map((_, i) => columns.map((col) => col[i]));
}

function clampTo(def: { min?: number; max?: number }, v: number): number {
  return Math.min(def.max ?? Infinity, Math.max(def.min ?? -Infinity, v));
}

function normalEquations(perWindow: { r: number[]; J: number[][] }[]): { JtJ: number[][]; Jtr: number[] } {
  const p = perWindow[0].J[0]?.length ?? 0;
  const JtJ = Array.from({ length: p }, () => new Array<number>(p).fill(0));
  const Jtr = new Array<number>(p).fill(0);
  for (const w of perWindow) {
    w.J.forEach((row, k) => {
      for (let a = 0; a < p; a++) {
        Jtr[a] += row[a] * w.r[k];
        for (let b = 0; b < p; b++) JtJ[a][b] += row[a] * row[b];
      }
    });
  }
  return { JtJ, Jtr };
}

function multiply(a: number[][], b: number[][]): number[][] {
  return a.map((row) => b[0].map((_, j) => row.reduce((s, v, k) => s + v * b[k][j], 0)));
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
