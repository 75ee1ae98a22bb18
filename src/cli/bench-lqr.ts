import { fromPhysical, inGoalRegion, physicalAngles, resolveModel, stateDifference, toPhysical } from '../models/model.js';
import { modelDefinition } from '../models/index.js';
import { goalLqr, YARDSTICK_LQR_WEIGHTS } from '../models/lqr.js';
import { controlPeriodS } from '../run/setup.js';
import { estimatorFor } from '../run/session.js';
import { Simulator } from '../../sim/simulator.js';
import { Command, JSON_OPTION, optionalInteger, parseNumber, parseVector, printJson, stringOpt, table } from './command.js';
import { RUN_OPTIONS, runOptions } from './run.js';
import { InputError } from '../input-error.js';

/**
 * A yardstick for balancing under noise: the LQR at the goal with perfect
 * state feedback (the plant's true state, no estimator, no planning delay),
 * started in the goal, against the same simulated plant and noise streams as
 * `bench mpc`. What it cannot hold, no controller of the same authority is
 * likely to hold; what it holds, the MPC should. With `--measured` it sees
 * what the controller sees (the noisy measurements, through the controller's
 * EKF when one is configured): LQG by certainty equivalence, the yardstick
 * for the MPC with the same estimator.
 */
export const benchLqrCommand: Command = {
  name: 'bench lqr',
  summary: 'Yardstick: LQR state feedback at the goal, started there, perfect state, against the simulated plant and its noise; per seed whether the goal region was held for the system\'s hold time and the share of time in it.',
  usage: 'bench lqr --system NAME [--q w1,w2,...] [--r W] [--seeds N] [--duration SEC] [--measured] [--params FILE.yaml] [--set sim.KEY=value] [--json]',
  options: {
    system: RUN_OPTIONS.system, duration: RUN_OPTIONS.duration, rate: RUN_OPTIONS.rate, params: RUN_OPTIONS.params, set: RUN_OPTIONS.set,
    q: { type: 'string', description: `LQR state weights, one per model state (default all ${YARDSTICK_LQR_WEIGHTS.state})`, valueName: 'w1,w2,...' },
    r: { type: 'string', description: `LQR control weight (default ${YARDSTICK_LQR_WEIGHTS.control})`, valueName: 'W' },
    seeds: { type: 'string', description: 'number of seeds, 0..N-1 (default 20)', valueName: 'N' },
    measured: { type: 'boolean', description: 'feed back what the controller would see instead of the true state: the simulator\'s measurements (sim.measurementNoise), through the EKF when estimator is ekf (the controller\'s estimator* parameters)' },
    json: JSON_OPTION,
  },
  async run(values) {
    const { system, params, durationS } = runOptions({ ...values, lockstep: true });
    const def = modelDefinition(system);
    const model = resolveModel(def, params.model);
    if (!def.goalRegion) throw new InputError(`system '${system}' has no goal region to hold`);
    const n = model.stateDim;
    const qText = stringOpt(values, 'q');
    const q = qText === undefined ? new Array<number>(n).fill(YARDSTICK_LQR_WEIGHTS.state) : parseVector('--q', qText, n);
    const rText = stringOpt(values, 'r');
    const r = rText === undefined ? YARDSTICK_LQR_WEIGHTS.control : parseNumber('--r', rText);
    if (!(r > 0) || !q.every((w) => w >= 0)) throw new InputError(`LQR weights must be non-negative with --r positive, got --q ${q.join(',')} --r ${r}`);
    const goal = [...model.goal];
    const uEq = new Array<number>(model.controlDim).fill(0);
    let K: number[][];
    try {
      ({ K } = goalLqr(model, uEq, q, new Array<number>(model.controlDim).fill(r)));
    } catch (e) {
      // the yardstick is state feedback about an equilibrium: a plant whose goal is none has no LQR to compare with
      throw new InputError(`not applicable to ${model.name}: its goal is not a stabilisable equilibrium of the linearised plant (${(e as Error).message.replace(/^lqrCostToGo: /, '')})`);
    }
    const angles = physicalAngles(model);
    const periodS = controlPeriodS(params.controller.rateHz, model.dtS);
    const seeds = optionalInteger(values, 'seeds', 20, 1);
    const ticks = Math.round(durationS / periodS);
    const holdS = def.goalRegion.holdS;
    const { lower, upper } = model.controlLimits;
    const measured = values.measured === true;
    const estimatorName = measured ? params.controller.estimator : 'none';
    const runs = [];
    for (let seed = 0; seed < seeds; seed++) {
      const sim = new Simulator(def, periodS, { ...params.sim, x0: toPhysical(model, goal) }, seed + 1, { ...params.model, ...params.simModel });
      const estimator = measured ? estimatorFor(model, params.controller) : undefined;
      let estimate: number[] | undefined;
      let inGoal = 0;
      let run = 0;
      let held = false;
      for (let k = 0; k < ticks; k++) {
        const x = fromPhysical(model, sim.state);
        let seen = x;
        if (measured) {
          const y = sim.measure();
          const fused = estimator?.measure(y, sim.timeS);
          // a measurement the estimator refuses (its gate) leaves the last estimate in place, as the controller's state does
          if (fused?.ok) estimate = fused.state;
          seen = estimator ? (estimate ?? fromPhysical(model, y)) : fromPhysical(model, y);
        }
        const e = seen.map((v, i) => stateDifference(angles[i], v, goal[i]));
        const u = K.map((row, j) => Math.min(upper[j], Math.max(lower[j], uEq[j] - row.reduce((s, kij, i) => s + kij * e[i], 0))));
        estimator?.setCommand(u);
        if (inGoalRegion(model, x, goal)) {
          inGoal++;
          run++;
          if (run * periodS >= holdS - 1e-9) held = true;
        } else run = 0;
        sim.advance(u);
      }
      runs.push({ seed, held, inGoal: inGoal / ticks });
    }
    const result = {
      system, q, r, gain: K, durationS, seeds, processNoise: params.sim.processNoise, holdS,
      feedback: measured ? { measurementNoise: params.sim.measurementNoise, estimator: estimatorName } : 'true state',
      held: runs.filter((x) => x.held).length, meanInGoal: runs.reduce((s, x) => s + x.inGoal, 0) / seeds, runs,
    };
    if (values.json) return printJson(result);
    console.log(table(runs.map((x) => [x.seed, String(x.held), `${(100 * x.inGoal).toFixed(0)}%`]), ['seed', `held ${holdS} s`, 'in goal']));
    console.log(`\nLQR on ${system} (K = ${K.map((row) => row.map((v) => +v.toPrecision(3)).join(' ')).join('; ')}), process noise ${params.sim.processNoise}, ${measured ? `measured (noise ${params.sim.measurementNoise}, estimator ${estimatorName})` : 'true state'}: held ${result.held}/${seeds}; in the goal ${(100 * result.meanInGoal).toFixed(0)}% of the time on average`);
  },
};
