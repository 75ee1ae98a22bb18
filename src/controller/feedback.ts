import { Expr, Scalar } from '../expr/expr.js';
import { buildStepGraphs } from '../kernels/graphs.js';
import { gradient } from '../expr/grad.js';
import { compileStepFunction, compileVectorFunction, StepFunction } from '../kernels/js-source.js';
import { cholesky, choleskySolve, clipToPsd, dot, matAdd as add, matMul, matVec, transpose } from '../linalg.js';
import { fromPhysical, Model, stateAngles, stateDifference, toPhysical } from '../models/model.js';

/**
 * Feedback gains along a finished plan, so the command side can answer the
 * state it measures between plans: u = u_k + K_k (x - x_k).
 *
 * The gains are the feedback half of iLQG's backward pass (Tassa, Erez and
 * Todorov 2012; MuJoCo MPC hands its command side the same policy): the
 * finite-horizon LQR of the plan's linearisation, with the step's exact
 * Jacobians A_k, B_k and the exact Hessians of the planner's own stage and
 * terminal costs, all from the model definition through the expression
 * graph. As in iLQG the dynamics' second derivatives are left out (they cost
 * n times more and only matter far from the plan), and so is the coupling a
 * control-rate cost makes between neighbouring controls (its curvature on each
 * control is kept). Whatever planner made the plan, the gains are those of
 * the plan it made: near an equilibrium they approach the LQR of the cost.
 *
 * Safe by construction: a non-finite linearisation, or a value Hessian that
 * grows past CONDITION_LIMIT times its terminal scale (an unstable,
 * uncontrollable stretch), drops the gains for that plan with the reason,
 * and the command side holds the plan's controls instead. Where a cost is not
 * convex (an energy term far from the goal) its Hessian is clipped to the
 * nearest positive semidefinite one, so the value Hessian stays semidefinite
 * and Q_uu positive definite wherever the cost weighs the controls.
 */
export interface PlanFeedback {
  /** the plan's predicted model states, (horizon + 1) rows of stateDim, row-major */
  states: Float64Array;
  /** its controls (physical, horizon x controlDim): the planner's, or refined by one iLQG step */
  controls: Float64Array;
  /** the refinement's figures (the model's cost of the plan before and after, and the line search's step; 0: no step lowered it) */
  refinement?: { costBefore: number; costAfter: number; alpha: number };
  /** horizon blocks of controlDim x stateDim (row-major) over model-state deviations; undefined when dropped */
  gains: Float64Array | undefined;
  /** why the gains were dropped ('' when they were not) */
  problem: string;
}

/** A value Hessian growing past this many times its terminal scale is called ill-conditioned. */
const CONDITION_LIMIT = 1e12;
/** Q_uu's regularisation, relative to its scale: from here tenfold up to MAX_SHIFT until it is positive definite (it is semidefinite by construction). */
const FIRST_SHIFT = 1e-12;
const MAX_SHIFT = 1e-6;

type Compiled = (...arrays: (readonly number[])[]) => number[];

/** Step sizes tried on the feedforward correction, largest first (iLQG's backtracking line search). */
const LINE_SEARCH = [1, 0.5, 0.25, 0.125];
/** optimise's line search: further down, since far from an optimum the quadratic model holds only near the path */
const OPTIMISE_LINE_SEARCH = [1, 0.5, 0.25, 0.1, 0.05, 0.01];
/** optimise's Levenberg-Marquardt term on Q_uu, relative to the terminal Hessian's scale: where it starts and is kept above, and past where no step is taken (converged) */
const FIRST_REGULARISATION = 1e-9;
const MAX_REGULARISATION = 1e6;
/** optimise: a step that lowers the cost by less than this share of it ends the run (converged) */
const CONVERGED_RELATIVE = 1e-12;

/** The costs' reference at plan step k (0 to horizon). */
type ReferenceAt = (k: number) => readonly number[];

/** What FeedbackBuilder.optimise found. */
export interface TrajectoryOptimum {
  /** (horizon + 1) x stateDim, and horizon x controlDim (physical) */
  states: Float64Array;
  controls: Float64Array;
  /** the model's cost of the path from the controls given, and of the one found */
  costBefore: number;
  cost: number;
  /** iterations that lowered the cost */
  iterations: number;
  /** whether it stopped because no regularisation found a lower cost (not for want of iterations) */
  converged: boolean;
  /** the regularisation the next iteration would start from: given back as opts.regularisation, a run continued from these controls repeats an uninterrupted one */
  regularisation: number;
}

/** A plan's linearisation: the forward pass of iLQG. */
interface Linearisation {
  states: Float64Array;
  controls: Float64Array;
  cost: number;
  A: number[][][];
  B: number[][][];
  /** stage cost gradients over x, u and the previous control */
  lx: number[][];
  lu: number[][];
  lp: number[][];
  hxx: number[][][];
  huu: number[][][];
  hux: number[][][];
  hpp: number[][][];
  terminalGradient: number[];
  terminalHessian: number[][];
}

export class FeedbackBuilder {
  /** (x, u, uPrev, ref) -> next state, step Jacobian over (x, u), stage cost, its gradient and Hessian over (x, u, uPrev) */
  private readonly stage: Compiled;
  /** (x, u, uPrev, ref) -> next state and stage cost: the line search's rollouts */
  private readonly stageValue: Compiled;
  /** (x, ref) -> terminal cost, its gradient and Hessian */
  private readonly terminal: Compiled;
  /** (x, ref) -> terminal cost */
  private readonly terminalValue: Compiled;
  private readonly angles: boolean[];

  constructor(readonly model: Model) {
    const { stateDim: n, controlDim: m } = model;
    // the kernels' own graphs: the same step and costs the planners roll out
    const { inputs: { x, u, prev }, next, stage: stageCost, terminal: terminalCost } = buildStepGraphs(model, false);
    const jacobian = next.flatMap((f) => gradient(f, [...x, ...u]));
    const derivatives = (cost: Scalar, wrt: readonly Expr[]) => {
      const first = gradient(cost, wrt);
      return [cost, ...first, ...first.flatMap((gi) => gradient(gi, wrt))];
    };
    const args = [['X', 'x', n], ['U', 'u', m], ['P', 'p', m], ['R', 'r', n]] as const;
    this.stage = compileVectorFunction([...next, ...jacobian, ...derivatives(stageCost, [...x, ...u, ...prev])], args);
    this.stageValue = compileVectorFunction([...next, stageCost], args);
    this.terminal = compileVectorFunction(derivatives(terminalCost, x), [['X', 'x', n], ['R', 'r', n]]);
    this.terminalValue = compileVectorFunction([terminalCost], [['X', 'x', n], ['R', 'r', n]]);
    this.angles = stateAngles(model.def);
  }

  /**
   * The plan's predicted states and its gains, from model state x0 under
   * `controls` (physical, horizon x controlDim) after `uPrev`. With `refine`,
   * the plan is also improved by one iLQG step: the feedforward -Q_uu^-1 Q_u
   * with the gains, rolled out from x0 at the largest step of the line search
   * that lowers the model's cost; a sampling planner's plan is then polished
   * to the optimum of its local quadratic model (near a goal, the LQR's
   * command) instead of carrying its sampling noise.
   */
  build(x0: readonly number[], controls: Float64Array, uPrev: readonly number[], reference: readonly number[], refine = false): PlanFeedback {
    const goal = () => reference;
    const lin = this.linearise(x0, controls, uPrev, goal);
    const { states } = lin;
    const dropped = (problem: string): PlanFeedback => ({ states, controls, gains: undefined, problem });
    if (!states.every(Number.isFinite) || !Number.isFinite(lin.cost)) return dropped('the plan\'s predicted states or cost are not finite');
    const pass = this.backward(lin);
    if (typeof pass === 'string') return dropped(pass);
    const plan: PlanFeedback = { states, controls, gains: pass.gains, problem: '' };
    if (!refine) return plan;
    for (const alpha of LINE_SEARCH) {
      const trial = this.rollout(x0, lin, pass, alpha, uPrev, goal);
      if (trial.cost < lin.cost) return { ...plan, states: trial.states, controls: trial.controls, refinement: { costBefore: lin.cost, costAfter: trial.cost, alpha } };
    }
    return { ...plan, refinement: { costBefore: lin.cost, costAfter: lin.cost, alpha: 0 } };
  }

  private linearise(x0: readonly number[], controls: Float64Array, uPrev: readonly number[], reference: ReferenceAt): Linearisation {
    const { stateDim: n, controlDim: m } = this.model;
    const d = n + m + m;
    const horizon = controls.length / m;
    const states = new Float64Array((horizon + 1) * n);
    states.set(x0);
    const lin: Linearisation = {
      states, controls, cost: 0, A: [], B: [], lx: [], lu: [], lp: [], hxx: [], huu: [], hux: [], hpp: [], terminalGradient: [], terminalHessian: [],
    };
    let x = [...x0];
    let previous = [...uPrev];
    for (let k = 0; k < horizon; k++) {
      const uk = Array.from(controls.subarray(k * m, (k + 1) * m));
      const out = this.stage(x, uk, previous, reference(k));
      const at = (offset: number, rows: number, cols: number, stride: number, r0 = 0, c0 = 0) =>
        Array.from({ length: rows }, (_, i) => Array.from({ length: cols }, (_, j) => out[offset + (r0 + i) * stride + c0 + j]));
      lin.A.push(at(n, n, n, n + m));
      lin.B.push(at(n, n, m, n + m, 0, n));
      const c = n + n * (n + m);
      lin.cost += out[c];
      lin.lx.push(out.slice(c + 1, c + 1 + n));
      lin.lu.push(out.slice(c + 1 + n, c + 1 + n + m));
      lin.lp.push(out.slice(c + 1 + n + m, c + 1 + d));
      const h = c + 1 + d;
      lin.hxx.push(at(h, n, n, d));
      lin.huu.push(at(h, m, m, d, n, n));
      lin.hux.push(at(h, m, n, d, n, 0));
      lin.hpp.push(at(h, m, m, d, n + m, n + m));
      x = out.slice(0, n);
      states.set(x, (k + 1) * n);
      previous = uk;
    }
    const t = this.terminal(x, reference(horizon));
    lin.cost += t[0];
    lin.terminalGradient = t.slice(1, 1 + n);
    lin.terminalHessian = symmetric(t.slice(1 + n), n);
    return lin;
  }

  /**
   * iLQG run to convergence from `controls` (physical, horizon x
   * controlDim): trajectory optimisation of the model's own cost from x0,
   * as Tassa, Erez and Todorov (2012) give it, with their Levenberg-Marquardt
   * regularisation on Q_uu (raised tenfold while no step of the line search
   * lowers the cost, lowered threefold after each that does) and the
   * feedforward clamped to the control limits, where the clamped controls
   * get no feedback (their box-constrained backward pass, exact for one
   * control). `reference`: the costs' reference, one state for every step
   * (the goal), or (horizon + 1) rows of stateDim, one for each step (a path
   * to follow). Stops after `iterations`, or where no regularisation finds a
   * lower cost or a step lowers it by less than a 1e-12 share (converged).
   * Synchronous: a caller that must stay responsive runs it in slices
   * (`untilMs`: stop after the iteration that passes this performance.now()),
   * each from the last one's controls and regularisation.
   */
  optimise(
    x0: readonly number[], controls: Float64Array, uPrev: readonly number[], reference: readonly number[] | Float64Array,
    opts: { iterations: number; onIteration?: (iteration: number, cost: number) => void; regularisation?: number; untilMs?: number },
  ): TrajectoryOptimum {
    const { stateDim: n } = this.model;
    const horizon = controls.length / this.model.controlDim;
    const path = reference.length === (horizon + 1) * n;
    if (!path && reference.length !== n) throw new Error(`reference holds ${reference.length} values: one state (${n}) or one for each of ${horizon + 1} steps`);
    const values = Array.from(reference);
    const rows = Array.from({ length: path ? horizon + 1 : 1 }, (_, k) => values.slice(k * n, (k + 1) * n));
    const referenceAt: ReferenceAt = path ? (k) => rows[k] : () => rows[0];
    let lin = this.linearise(x0, controls, uPrev, referenceAt);
    const costBefore = lin.cost;
    let regularisation = opts.regularisation ?? FIRST_REGULARISATION;
    let iteration = 0;
    let converged = false;
    while (iteration < opts.iterations) {
      const pass = this.backward(lin, regularisation, true);
      let next: { states: Float64Array; controls: Float64Array; cost: number } | undefined;
      if (typeof pass !== 'string') {
        for (const alpha of OPTIMISE_LINE_SEARCH) {
          const trial = this.rollout(x0, lin, pass, alpha, uPrev, referenceAt);
          if (trial.cost < lin.cost) {
            next = trial;
            break;
          }
        }
      }
      if (!next) {
        regularisation *= 10;
        if (regularisation > MAX_REGULARISATION) {
          converged = true;
          break;
        }
        continue;
      }
      iteration++;
      regularisation = Math.max(FIRST_REGULARISATION, regularisation / 3);
      const lowered = lin.cost - next.cost;
      lin = this.linearise(x0, next.controls, uPrev, referenceAt);
      opts.onIteration?.(iteration, lin.cost);
      // what is left is rounding
      if (lowered <= CONVERGED_RELATIVE * Math.abs(lin.cost)) {
        converged = true;
        break;
      }
      if (opts.untilMs !== undefined && performance.now() >= opts.untilMs) break;
    }
    return { states: lin.states, controls: lin.controls, cost: lin.cost, costBefore, iterations: iteration, converged, regularisation };
  }

  /**
   * iLQG's backward pass: the gains K_k and feedforward k_k, or why there
   * are none. `regularisation` (relative to the terminal Hessian's scale) is
   * added to Q_uu's diagonal where K and k are solved for; `clampToLimits`
   * keeps u_k + k_k within the control limits, dropping the clamped
   * controls' feedback.
   */
  private backward(lin: Linearisation, regularisation = 0, clampToLimits = false): { gains: Float64Array; K: number[][][]; feedforward: number[][] } | string {
    const { lower, upper } = this.model.controlLimits;
    const { stateDim: n, controlDim: m } = this.model;
    const horizon = lin.A.length;
    let V = clipToPsd(lin.terminalHessian);
    let v = [...lin.terminalGradient];
    const scale = Math.max(1, ...V.flat().map(Math.abs));
    const gains = new Float64Array(horizon * m * n);
    const Ks: number[][][] = new Array(horizon);
    const feedforward: number[][] = new Array(horizon);
    for (let k = horizon - 1; k >= 0; k--) {
      const [a, b] = [lin.A[k], lin.B[k]];
      if (![a, b, lin.hxx[k], lin.huu[k], lin.hux[k]].every((M) => M.every((row) => row.every(Number.isFinite))) || ![...lin.lx[k], ...lin.lu[k]].every(Number.isFinite)) {
        return `the linearisation at plan step ${k} is not finite`;
      }
      // the next stage's cost of this control as its previous one (a rate penalty) bears on it too
      const later = k + 1 < horizon;
      const [lxx, luu, lux] = convexified(lin.hxx[k], add(lin.huu[k], later ? lin.hpp[k + 1] : zeros(m, m)), lin.hux[k]);
      const lu = lin.lu[k].map((g, i) => g + (later ? lin.lp[k + 1][i] : 0));
      const at = transpose(a);
      const bt = transpose(b);
      const Va = matMul(V, a);
      const Qx = lin.lx[k].map((g, i) => g + dot(at[i], v));
      const Qu = lu.map((g, i) => g + dot(bt[i], v));
      const Qxx = add(lxx, matMul(at, Va));
      const Quu = add(luu, matMul(bt, matMul(V, b)));
      const Qux = add(lux, matMul(bt, Va));
      const L = regularisedCholesky(symmetrise(Quu).map((row, i) => row.map((q, j) => (i === j ? q + regularisation * scale : q))));
      if (!L) return `Q_uu at plan step ${k} is singular: neither the cost nor the value weighs the controls there`;
      // K = -Quu^-1 Qux, column by column; k = -Quu^-1 Qu
      const K = transpose(transpose(Qux).map((col) => choleskySolve(L, col.map((x) => -x))));
      const ff = choleskySolve(L, Qu.map((x) => -x));
      if (clampToLimits) {
        for (let i = 0; i < m; i++) {
          const u = lin.controls[k * m + i];
          const clamped = Math.min(upper[i] - u, Math.max(lower[i] - u, ff[i]));
          if (clamped !== ff[i]) {
            ff[i] = clamped;
            K[i] = K[i].map(() => 0);
          }
        }
      }
      // V = Qxx + K'Quu K + K'Qux + Qux'K and v = Qx + K'Quu k + K'Qu + Qux'k: the full forms stay right when Q_uu was shifted
      const KtQux = matMul(transpose(K), Qux);
      V = symmetrise(add(add(Qxx, matMul(transpose(K), matMul(Quu, K))), add(KtQux, transpose(KtQux))));
      const QuuK = matVec(Quu, ff);
      v = Qx.map((g, i) => g + K.reduce((s, row, j) => s + row[i] * (QuuK[j] + Qu[j]), 0) + Qux.reduce((s, row, j) => s + row[i] * ff[j], 0));
      if (!V.every((row) => row.every((x) => Number.isFinite(x) && Math.abs(x) <= CONDITION_LIMIT * scale))) {
        return `the value Hessian grows past ${CONDITION_LIMIT.toExponential(0)} times the terminal cost's at plan step ${k}: an ill-conditioned linearisation`;
      }
      Ks[k] = K;
      feedforward[k] = ff;
      for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) gains[(k * m + i) * n + j] = K[i][j];
    }
    return { gains, K: Ks, feedforward };
  }

  /** The closed-loop rollout of the line search: u_k = ubar_k + alpha k_k + K_k (x_k - xbar_k), clamped to the limits. */
  private rollout(
    x0: readonly number[], lin: Linearisation, pass: { K: number[][][]; feedforward: number[][] }, alpha: number, uPrev: readonly number[], reference: ReferenceAt,
  ): { states: Float64Array; controls: Float64Array; cost: number } {
    const { stateDim: n, controlDim: m, controlLimits: { lower, upper } } = this.model;
    const horizon = lin.A.length;
    const states = new Float64Array((horizon + 1) * n);
    const controls = new Float64Array(horizon * m);
    states.set(x0);
    let x = [...x0];
    let previous = [...uPrev];
    let cost = 0;
    for (let k = 0; k < horizon; k++) {
      const e = x.map((xi, i) => stateDifference(this.angles[i], xi, lin.states[k * n + i]));
      const u = Array.from({ length: m }, (_, i) => {
        const ubar = lin.controls[k * m + i];
        const raw = ubar + alpha * pass.feedforward[k][i] + dot(pass.K[k][i], e);
        return Math.min(upper[i], Math.max(lower[i], raw));
      });
      const out = this.stageValue(x, u, previous, reference(k));
      cost += out[n];
      x = out.slice(0, n);
      controls.set(u, k * m);
      states.set(x, (k + 1) * n);
      previous = u;
    }
    cost += this.terminalValue(x, reference(horizon))[0];
    return { states, controls, cost: Number.isFinite(cost) ? cost : Infinity };
  }
}

/**
 * The plan's model state at plan step `s` (a fraction: between its states,
 * along the circle for angles). `angles`: stateAngles of the model.
 */
export function planStateAt(model: Model, angles: readonly boolean[], states: Float64Array, s: number): number[] {
  const n = model.stateDim;
  const rows = states.length / n;
  const k = Math.min(rows - 1, Math.max(0, Math.floor(s + 1e-9)));
  const f = k + 1 < rows ? Math.min(1, Math.max(0, s - k)) : 0;
  return Array.from({ length: n }, (_, i) => {
    const a = states[k * n + i];
    return f === 0 ? a : a + f * stateDifference(angles[i], states[(k + 1) * n + i], a);
  });
}

/** u + K_k (x - x_plan): row k's gain applied to the deviation of model state x from the plan's state `xPlan`. */
export function feedbackCommand(model: Model, angles: readonly boolean[], u: readonly number[], gains: Float64Array, k: number, x: readonly number[], xPlan: readonly number[]): number[] {
  const { stateDim: n, controlDim: m } = model;
  const row = Math.min(k, gains.length / (m * n) - 1);
  const e = x.map((v, i) => stateDifference(angles[i], v, xPlan[i]));
  return u.map((v, i) => {
    let s = v;
    for (let j = 0; j < n; j++) s += gains[(row * m + i) * n + j] * e[j];
    return s;
  });
}

/**
 * Feedback for any plan, wherever it is made (the planner's thread, or the
 * command thread when the planner runs there): the builder is compiled at
 * the first plan and a failure to compile is remembered; where the gains
 * cannot be built, the plan's states still come from rolling the model out.
 */
export class PlanFeedbackMaker {
  private builder: FeedbackBuilder | Error | undefined;
  private step: StepFunction | undefined;

  constructor(readonly model: Model) {}

  make(x0: readonly number[], controls: Float64Array, uPrev: readonly number[], reference: readonly number[], refine: boolean): PlanFeedback {
    try {
      if (this.builder === undefined) {
        try {
          this.builder = new FeedbackBuilder(this.model);
        } catch (e) {
          this.builder = e instanceof Error ? e : new Error(String(e));
        }
      }
      if (this.builder instanceof Error) throw this.builder;
      return this.builder.build(x0, controls, uPrev, reference, refine);
    } catch (e) {
      const { controlDim: m, noiseDim } = this.model;
      this.step ??= compileStepFunction(buildStepGraphs(this.model, false));
      const zero = new Array<number>(noiseDim).fill(0);
      const states = [Array.from(x0)];
      for (let k = 0; k < controls.length / m; k++) states.push(this.step(states[k], Array.from(controls.subarray(k * m, (k + 1) * m)), zero));
      return { states: Float64Array.from(states.flat()), controls, gains: undefined, problem: `the linearisation failed: ${(e as Error).message}` };
    }
  }
}

/**
 * The gains over physical-state deviations (what the plan message carries,
 * beside its physical states): K_k times the Jacobian of fromPhysical at the
 * plan's state (central differences; the identity where the model state is
 * the physical state).
 */
export function physicalGains(model: Model, feedback: PlanFeedback): Float64Array | undefined {
  const { gains, states } = feedback;
  if (!gains || !model.def.physical) return gains;
  const { stateDim: n, controlDim: m } = model;
  const out = new Float64Array(gains.length);
  const h = 1e-6;
  for (let k = 0; k < gains.length / (m * n); k++) {
    const y = toPhysical(model, Array.from(states.subarray(k * n, (k + 1) * n)));
    const columns = y.map((_, j) => {
      const plus = fromPhysical(model, y.map((v, i) => v + (i === j ? h : 0)));
      const minus = fromPhysical(model, y.map((v, i) => v - (i === j ? h : 0)));
      return plus.map((v, i) => (v - minus[i]) / (2 * h));
    });
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let l = 0; l < n; l++) s += gains[(k * m + i) * n + l] * columns[j][l];
        out[(k * m + i) * n + j] = s;
      }
    }
  }
  return out;
}

/**
 * The stage cost's Hessian over (x, u) made positive semidefinite (negative
 * eigenvalues set to zero): where the cost is not convex along the plan (an
 * energy term pumping the swing-up) the feedback must not push away from the
 * plan; exploiting that curvature is the planner's job, holding the plan the
 * feedback's. Returns the x-x, u-u and u-x blocks.
 */
function convexified(hxx: number[][], huu: number[][], hux: number[][]): [number[][], number[][], number[][]] {
  const n = hxx.length;
  const joint = clipToPsd([...hxx.map((row, i) => [...row, ...hux.map((r) => r[i])]), ...huu.map((row, i) => [...hux[i], ...row])]);
  return [joint.slice(0, n).map((row) => row.slice(0, n)), joint.slice(n).map((row) => row.slice(n)), joint.slice(n).map((row) => row.slice(0, n))];
}

/** Cholesky of a positive semidefinite Q_uu, shifted by a small multiple of its scale where it is singular to working precision (undefined: still singular). */
function regularisedCholesky(Q: number[][]): number[][] | undefined {
  const scale = Math.max(...Q.map((row, i) => Math.abs(row[i])));
  if (!(scale > 0)) return undefined;
  for (let shift = 0; shift <= MAX_SHIFT * scale; shift = shift === 0 ? FIRST_SHIFT * scale : 10 * shift) {
    const L = cholesky(Q.map((row, i) => row.map((v, j) => (i === j ? v + shift : v))));
    if (L) return L;
  }
  return undefined;
}

const zeros = (r: number, c: number) => Array.from({ length: r }, () => new Array<number>(c).fill(0));
const symmetric = (flat: number[], n: number) => symmetrise(Array.from({ length: n }, (_, i) => flat.slice(i * n, (i + 1) * n)));
const symmetrise = (M: number[][]) => M.map((row, i) => row.map((v, j) => 0.5 * (v + M[j][i])));
