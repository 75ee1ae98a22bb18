import { diagonalMatrix, dot, invert, matAdd as add, matMul as mul, Matrix, matVec as mulVec, transpose } from '../linalg.js';
import { Graph, Scalar } from '../expr/expr.js';
import { compileVectorFunction } from '../kernels/js-source.js';
import { gradient } from '../expr/grad.js';
import { disturbedStates, fromPhysical, Model, ParamValues } from '../models/model.js';

/**
 * The model's step and its measurement with their exact Jacobians, from the
 * same definition and expression graph as the rollout kernels: F = df/dx of
 * one step at the applied control, H = dh/dx of the physical state a sensor
 * reports (the identity where the model state is the physical state).
 */
export interface LinearizedModel {
  step(x: readonly number[], u: readonly number[]): { next: number[]; F: number[][] };
  measure(x: readonly number[]): { y: number[]; H: number[][] };
}

export function linearize(model: Model): LinearizedModel {
  const { stateDim: n, controlDim: m, noiseDim: k, def } = model;
  const g = new Graph();
  const x = g.inputs('x', n);
  const u = g.inputs('u', m);
  const p = model.params as ParamValues<string>;
  const next = def.step(x, u, new Array<number>(k).fill(0), p);
  const F = next.map((f) => gradient(f, x));
  const y: Scalar[] = def.physical ? def.physical.toPhysical(x, p) : x;
  const H = y.map((h) => gradient(h, x));
  const stepFn = compileVectorFunction([...next, ...F.flat()], [['X', 'x', n], ['U', 'u', m]]);
  const measureFn = compileVectorFunction([...y, ...H.flat()], [['X', 'x', n]]);
  const rows = (flat: number[], offset: number) => Array.from({ length: n }, (_, i) => flat.slice(offset + i * n, offset + (i + 1) * n));
  return {
    step(xv, uv) {
      const out = stepFn(xv, uv);
      return { next: out.slice(0, n), F: rows(out, n) };
    },
    measure(xv) {
      const out = measureFn(xv);
      return { y: out.slice(0, n), H: rows(out, n) };
    },
  };
}

export interface EkfParams {
  /** std of the process noise per sqrt(second): per model state in its units (`all`), or per joint velocity (`rates`) */
  processNoise: number;
  /** where the process noise enters: every model state, or the joint velocities only (a disturbing torque or force) */
  processNoiseOn: 'all' | 'rates';
  /** std of the measurement noise per physical state */
  measurementNoise: number;
  /** squared Mahalanobis distance beyond which a measurement is refused (0: no gate) */
  gate: number;
}

export type EkfResult =
  | { ok: true; state: number[]; covariance: number[][]; mahalanobis2: number }
  | { ok: false; reason: string };

/** Longest gap (in model steps) the filter predicts across; after a longer outage it starts again from the measurement. */
const MAX_PREDICT_STEPS = 1000;

/**
 * An extended Kalman filter on the model: between measurements the estimate
 * follows the model's step with the last applied command (whole model
 * steps; a measurement is fused at the nearest step), and each measurement
 * corrects it (Joseph-form covariance update). Measurements beyond the gate
 * are refused with a reason and leave the prediction in place.
 */
export class Ekf {
  private x: number[] | undefined;
  private P: number[][] = [];
  private timeS = 0;
  private command: number[];
  /** the joint-rate states, when the process noise is on them (found once) */
  private rates: number[] | undefined;

  constructor(readonly model: Model, private readonly lin: LinearizedModel, readonly params: EkfParams) {
    this.command = new Array<number>(model.controlDim).fill(0);
  }

  /** The command applied from now on (the prediction uses it). */
  setCommand(u: readonly number[]): void {
    this.command = [...u];
  }

  reset(): void {
    this.x = undefined;
  }

  /** Fuses a physical measurement stamped `stampS`; the estimate is in model state units. */
  measure(y: readonly number[], stampS: number): EkfResult {
    const n = this.model.stateDim;
    const r2 = this.params.measurementNoise ** 2;
    if (!this.x) return this.start(y, stampS);
    const steps = Math.round((stampS - this.timeS) / this.model.dtS);
    if (steps < 0) return { ok: false, reason: `state estimator: measurement stamped ${(this.timeS - stampS).toFixed(3)} s before the estimate (out of order)` };
    if (steps > MAX_PREDICT_STEPS) return this.start(y, stampS);
    let x = this.x;
    let P = this.P;
    const q2 = this.params.processNoise ** 2 * this.model.dtS;
    for (let s = 0; s < steps; s++) {
      const { next, F } = this.lin.step(x, this.command);
      x = next;
      P = add(mul(mul(F, P), transpose(F)), this.processCovariance(x, q2));
    }
    const { y: predicted, H } = this.lin.measure(x);
    const innovation = y.map((v, i) => v - predicted[i]);
    const S = add(mul(mul(H, P), transpose(H)), diagonal(n, r2));
    const Sinv = invert(S);
    const d2 = dot(innovation, mulVec(Sinv, innovation));
    // the prediction stands either way: time has moved on
    this.timeS += steps * this.model.dtS;
    this.x = x;
    this.P = P;
    if (!Number.isFinite(d2) || !x.every(Number.isFinite)) {
      this.x = undefined;
      return { ok: false, reason: 'state estimator diverged (non-finite estimate); it starts again from the next measurement' };
    }
    if (this.params.gate > 0 && d2 > this.params.gate) {
      return { ok: false, reason: `state estimator: measurement refused as an outlier (squared Mahalanobis distance ${d2.toFixed(1)} > gate ${this.params.gate})` };
    }
    const K = mul(mul(P, transpose(H)), Sinv);
    const correction = mulVec(K, innovation);
    this.x = x.map((v, i) => v + correction[i]);
    const IKH = add(diagonal(n, 1), scale(mul(K, H), -1));
    this.P = add(mul(mul(IKH, P), transpose(IKH)), scale(mul(K, transpose(K)), r2));
    return { ok: true, state: [...this.x], covariance: this.P.map((row) => [...row]), mahalanobis2: d2 };
  }

  /** One step's process covariance in model units: q2 on every model state, or on the joint velocities carried into model units through H^-1. */
  private processCovariance(x: readonly number[], q2: number): Matrix {
    const n = this.model.stateDim;
    if (this.params.processNoiseOn === 'all') return diagonal(n, q2);
    // the session refused estimatorProcessNoiseOn = rates at configure for a system without joint rates
    this.rates ??= disturbedStates(this.model.def, 'rates') as number[];
    const rates = this.rates;
    const D = Array.from({ length: n }, (_, i) => Array.from({ length: n }, (__, j) => (i === j && rates.includes(i) ? q2 : 0)));
    if (!this.model.def.physical) return D;
    const Hinv = invert(this.lin.measure(x).H);
    return mul(mul(Hinv, D), transpose(Hinv));
  }

  private start(y: readonly number[], stampS: number): EkfResult {
    this.x = fromPhysical(this.model, y);
    // the first measurement's uncertainty, carried into model units through H
    const { H } = this.lin.measure(this.x);
    const Hinv = invert(H);
    this.P = scale(mul(Hinv, transpose(Hinv)), this.params.measurementNoise ** 2);
    this.timeS = stampS;
    return { ok: true, state: [...this.x], covariance: this.P.map((row) => [...row]), mahalanobis2: 0 };
  }
}

const scale = (A: Matrix, c: number): Matrix => A.map((row) => row.map((a) => a * c));
const diagonal = (n: number, d: number): Matrix => diagonalMatrix(new Array<number>(n).fill(d));
