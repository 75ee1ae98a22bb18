import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { buildPlanner } from '../src/controller/planner-spec.js';
import { pendulum as pendulumDef } from '../src/models/pendulum.js';
import { resolveModel } from '../src/models/model.js';
import { PLANNERS } from '../src/planners/registry.js';
import { Rng } from '../src/random.js';
import { untrainedPendulumPrior } from './support/priors.js';
import { ControllerSession } from '../src/run/session.js';
import { controllerParameterTable, resolveRunParams } from '../src/run/setup.js';
import { dualEta, Proposal, SmcProblem, SmcSettings, smcOverTime } from '../src/planners/spo/smc.js';
import { trustRegionProposal } from '../src/planners/trtsmc/index.js';
import { guideDrawCount } from '../src/planners/spo/receding.js';
import { trustRegion } from '../src/planners/trtsmc/trust-region.js';

/**
 * A 1-D problem small enough to weigh by hand: x' = x + u, l = x^2 + u^2,
 * V(x) = x^2, gamma 1, controls not scaled. The policy's output is unused by
 * the fixed proposals below.
 */
const handProblem = (gamma = 1): SmcProblem => ({
  stateDim: 1, controlDim: 1, x0: [1], uPrev: [0], gamma,
  policyValue: (x, count) => ({ mean: new Float64Array(count), std: new Float64Array(count).fill(1), value: Float64Array.from(x.subarray(0, count), (v) => v * v) }),
  step: (x, u) => [x[0] + u[0]],
  stageCost: (x, u) => x[0] * x[0] + u[0] * u[0],
  toPhysical: (z) => [z[0]],
});

/** Particle i's action at step t from a table (rows: steps), with no proposal correction. */
const fixed = (table: number[][]): Proposal => {
  let t = 0;
  return (_s, count) => ({ actions: Float64Array.from(table[t++].slice(0, count)), logCorrection: new Float64Array(count) });
};

const settings = (over: Partial<SmcSettings> = {}): SmcSettings => ({
  particles: 3, depth: 2, resampleEvery: 100, resampling: 'systematic', eta: 1, klBound: 0, revive: false, ...over,
});

const normalised = (logW: number[]) => {
  const w = logW.map(Math.exp);
  const total = w.reduce((a, b) => a + b, 0);
  return w.map((v) => v / total);
};

const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol = 1e-12, label = '') => {
  assert.equal(a.length, b.length, label);
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) <= tol, `${label}[${i}]: ${a[i]} vs ${b[i]}`);
};

describe('SMC planning over time (SPO, TRT-SMC)', () => {
  const actions = [[0.5, -1, 0], [0.1, 0.2, -0.3]];

  it('SPO: weights and q-hat of a 3-particle, 2-step case, by hand', () => {
    // by hand, A_t = -(l_t + V(x_{t+1}) - V(x_t)):
    // particle 0: x 1 -> 1.5 -> 1.6: A0 = -(1.25 + 2.25 - 1) = -2.5, A1 = -(2.25 + 0.01 + 2.56 - 2.25) = -2.57
    // particle 1: x 1 -> 0 -> 0.2:   A0 = -(2 + 0 - 1) = -1,        A1 = -(0 + 0.04 + 0.04 - 0) = -0.08
    // particle 2: x 1 -> 1 -> 0.7:   A0 = -(1 + 1 - 1) = -1,        A1 = -(1 + 0.09 + 0.49 - 1) = -0.58
    const r = smcOverTime(handProblem(), settings(), fixed(actions), new Rng(1));
    close(r.logWeights, [-5.07, -1.08, -1.58], 1e-12, 'log weights');
    close(r.survivingWeights, normalised([-5.07, -1.08, -1.58]), 1e-12, 'q-hat');
    close(r.rootActions, actions[0], 0, 'root actions');
    assert.equal(r.depthReached, 2);
    assert.equal(r.resamples, 0);
    // the model's terminal cost closes the pass with the value: l_T(x) = x^2 at x2 = 1.6, 0.2, 0.7
    const closed = smcOverTime({ ...handProblem(), terminalCost: (x) => x[0] * x[0] }, settings(), fixed(actions), new Rng(1));
    close(closed.logWeights, [-5.07 - 2.56, -1.08 - 0.04, -1.58 - 0.49], 1e-12, 'log weights with the terminal cost');
    // eta 2 halves every log weight
    const hot = smcOverTime(handProblem(), settings({ eta: 2 }), fixed(actions), new Rng(1));
    close(hot.survivingWeights, normalised([-2.535, -0.54, -0.79]), 1e-12, 'q-hat at eta 2');
  });

  it('SPO: resampling after step 1 moves states and ancestors; q-hat sums the survivors onto their roots', () => {
    // ancestors drawn as [1, 1, 2]: particles 0 and 1 continue from x = 0 (root 1), particle 2 from x = 1 (root 2), weights reset
    const r = smcOverTime(handProblem(), settings({ resampleEvery: 1, resampleIndices: () => Int32Array.from([1, 1, 2]) }), fixed(actions), new Rng(1));
    assert.deepEqual(Array.from(r.ancestors), [1, 1, 2]);
    // step 2 by hand: x 0 -u 0.1-> 0.1: A = -(0.01 + 0.01) = -0.02; x 0 -u 0.2-> 0.2: -0.08; x 1 -u -0.3-> 0.7: -0.58
    close(r.logWeights, [-0.02, -0.08, -0.58], 1e-12, 'log weights after resampling');
    const w = normalised([-0.02, -0.08, -0.58]);
    close(r.survivingWeights, [0, w[0] + w[1], w[2]], 1e-12, 'q-hat');
    assert.equal(r.resamples, 1);
    // the trajectories travel with their particles: particle 0 now holds root 1's first action
    close(r.trajectories, [-1, 0.1, -1, 0.2, 0, -0.3], 0, 'ancestral trajectories');
  });

  it('discounting: the advantage of step t counts gamma^t', () => {
    // gamma 0.5: A0 = -(l0 + 0.5 V(x1) - V(x0)), A1 = -(l1 + 0.5 V(x2) - V(x1)), log w = A0 + 0.5 A1
    const g = 0.5;
    const byHand = [[1.5, 1.6, 0.5, 0.1], [0, 0.2, -1, 0.2], [1, 0.7, 0, -0.3]].map(([x1, x2, a0, a1]) => {
      const A0 = -(1 + a0 * a0 + g * x1 * x1 - 1);
      const A1 = -(x1 * x1 + a1 * a1 + g * x2 * x2 - x1 * x1);
      return A0 + g * A1;
    });
    const r = smcOverTime(handProblem(g), settings(), fixed(actions), new Rng(1));
    close(r.logWeights, byHand, 1e-12, 'discounted log weights');
  });

  it('TRT-SMC: backed-up ancestor statistics equal their definition on a fixed resampling history', () => {
    const K = 4;
    const depth = 5;
    const rng = new Rng(3);
    const table = Array.from({ length: depth }, () => Array.from({ length: K }, () => rng.normal() * 0.7));
    const corrections = Array.from({ length: depth }, () => Array.from({ length: K }, () => rng.normal() * 0.1));
    let t = 0;
    const proposal: Proposal = () => {
      const draw = { actions: Float64Array.from(table[t]), logCorrection: Float64Array.from(corrections[t]) };
      t++;
      return draw;
    };
    const history = [[0, 0, 1, 3], [2, 2, 2, 0], [1, 3, 3, 3], [0, 1, 2, 3]];
    let call = 0;
    const r = smcOverTime(handProblem(0.9), settings({ particles: K, depth, resampleEvery: 1, eta: 0.7, resampleIndices: () => Int32Array.from(history[call++]) }), proposal, new Rng(1));
    // the definition (Algorithm 2, lines 8-9): Q_j += log mean over {i : J_i = j} of the incremental weight w_t / w_{t-1}
    let x = new Array<number>(K).fill(1);
    let J = [0, 1, 2, 3];
    const expected = new Array<number>(K).fill(0);
    const baseline = new Array<number>(K).fill(0);
    for (let s = 0; s < depth; s++) {
      const inc = x.map((xi, i) => {
        const a = table[s][i];
        const x1 = xi + a;
        return corrections[s][i] + 0.9 ** s * -(xi * xi + a * a + 0.9 * x1 * x1 - xi * xi) / 0.7;
      });
      for (let j = 0; j < K; j++) {
        const members = J.flatMap((anc, i) => (anc === j ? [i] : []));
        if (members.length) expected[j] += Math.log(members.reduce((acc, i) => acc + Math.exp(inc[i]), 0) / members.length);
        if (members.length) baseline[j] += Math.log(inc.reduce((acc, v) => acc + Math.exp(v), 0) / K);
      }
      x = x.map((xi, i) => xi + table[s][i]);
      if (s + 1 < depth) {
        const idx = history[s];
        x = idx.map((k) => x[k]);
        J = idx.map((k) => J[k]);
      }
    }
    close(r.backedUp, expected, 1e-10, 'backed-up statistics');
    close(r.backedUpBaseline, baseline, 1e-10, 'their per-step baselines');
    assert.deepEqual(Array.from(r.ancestors), J);
  });

  it('revived resampling continues a resampled particle from its parent\'s last finite state', () => {
    // particle 1's second step goes non-finite: its weight is zero and its reference stays at its last finite state
    const problem = { ...handProblem(), step: (x: readonly number[], u: readonly number[]) => [u[0] > 5 ? NaN : x[0] + u[0]] };
    const r = smcOverTime(problem, settings({ particles: 2, depth: 3, resampleEvery: 2, revive: true, resampleIndices: () => Int32Array.from([0, 0]) }), fixed([[0.1, 0.2], [0.1, 9], [0, 0]]), new Rng(1));
    assert.equal(r.depthReached, 3);
    assert.ok(r.states.every(Number.isFinite), 'both particles continue from finite states');
    close(r.states, [1.2, 1.2], 1e-12, 'continued from particle 0\'s state');
  });

  it('anytime: a deadline in the past stops the pass after its first step and says how deep it got', () => {
    const r = smcOverTime(handProblem(), settings({ deadline: performance.now() - 1 }), fixed(actions), new Rng(1));
    assert.equal(r.depthReached, 1);
    close(r.logWeights, [-2.5, -1, -1], 1e-12, 'one step of weights');
  });

  it('SPO dual: eta from eq. (7) shrinks as the KL bound grows', () => {
    const a = [-3, -1, -0.5, 0, -2, -4];
    const loose = dualEta(a, 2);
    const tight = dualEta(a, 0.05);
    assert.ok(loose < tight, `eta ${loose} at KL 2 vs ${tight} at KL 0.05`);
    // at the optimum, KL(q || uniform) of q ∝ exp(A / eta) meets the bound
    for (const [bound, eta] of [[0.05, tight], [0.5, dualEta(a, 0.5)]]) {
      const w = normalised(a.map((v) => v / eta));
      const kl = w.reduce((acc, p) => acc + (p > 0 ? p * Math.log(p * a.length) : 0), 0);
      assert.ok(Math.abs(kl - bound) < 1e-3, `KL ${kl} vs bound ${bound}`);
    }
  });

  it('draws around the previous plan: particles 1..count take the guide\'s action plus the policy\'s std x stdScale, weighed by log pi / q of their own draw', () => {
    // no cost and no value: each particle's log weight is the sum of its proposal corrections alone
    const policyMean = 0.3;
    const policyStd = 0.5;
    const problem: SmcProblem = {
      ...handProblem(),
      policyValue: (_x, count) => ({ mean: new Float64Array(count).fill(policyMean), std: new Float64Array(count).fill(policyStd), value: new Float64Array(count) }),
      stageCost: () => 0,
    };
    const K = 203;
    const guide = Float64Array.of(0.5, -0.25);
    const stdScale = 0.2;
    const zeros: Proposal = (_s, count) => ({ actions: new Float64Array(count), logCorrection: new Float64Array(count) });
    const r = smcOverTime(problem, settings({ particles: K, depth: 2, eta: 1, guide, guideDraws: { count: 500, stdScale, bounded: [false] } }), zeros, new Rng(4));
    const normals: number[] = [];
    for (let i = 0; i < K; i++) {
      const z = [r.trajectories[i * 2], r.trajectories[i * 2 + 1]];
      if (i === 0) {
        close(z, guide, 0, 'particle 0 follows the guide');
        assert.equal(r.logWeights[0], 0);
      } else if (i === K - 1) {
        // at most K - 2 draw around the guide: the last keeps the proposal's (the mean particle's place)
        close(z, [0, 0], 0, 'the last particle keeps its proposal');
      } else {
        let expected = 0;
        for (let t = 0; t < 2; t++) {
          const e = (z[t] - guide[t]) / (stdScale * policyStd);
          normals.push(e);
          expected += -0.5 * ((z[t] - policyMean) / policyStd) ** 2 + 0.5 * e * e + Math.log(stdScale);
        }
        assert.ok(Math.abs(r.logWeights[i] - expected) < 1e-12, `particle ${i}: log weight ${r.logWeights[i]} vs log pi / q ${expected}`);
      }
    }
    // the draws' noise is standard normal (402 of them)
    const mean = normals.reduce((a, b) => a + b, 0) / normals.length;
    const sd = Math.sqrt(normals.reduce((a, b) => a + (b - mean) ** 2, 0) / normals.length);
    assert.ok(Math.abs(mean) < 0.15 && Math.abs(sd - 1) < 0.1, `noise mean ${mean}, std ${sd}`);
    // bounded controls are clipped; without a guide (no previous plan) nothing is drawn around it
    const clipped = smcOverTime(problem, settings({ particles: 4, depth: 1, guide: Float64Array.of(0.99), guideDraws: { count: 2, stdScale: 10, bounded: [true] } }), zeros, new Rng(5));
    assert.ok(Array.from(clipped.rootActions).every((z) => Math.abs(z) <= 1), `clipped: ${Array.from(clipped.rootActions)}`);
    const unguided = smcOverTime(problem, settings({ particles: 4, depth: 1, guideDraws: { count: 2, stdScale: 0.2, bounded: [false] } }), zeros, new Rng(5));
    close(unguided.rootActions, [0, 0, 0, 0], 0, 'no guide, the proposal\'s actions');
  });

  it('warmStartShare: the share of K drawn around the previous plan, leaving the exact warm start and the mean particle theirs', () => {
    assert.equal(guideDrawCount({ particles: 16, warmStartShare: 0.6 }), 10);
    assert.equal(guideDrawCount({ particles: 64, warmStartShare: 0.5 }), 32);
    assert.equal(guideDrawCount({ particles: 16, warmStartShare: 1 }), 14);
    assert.equal(guideDrawCount({ particles: 2, warmStartShare: 0.5 }), 0);
    assert.equal(guideDrawCount({ particles: 16, warmStartShare: 0 }), 0);
  });

  describe('TRT-SMC trust-region proposal (eq. (7), Appendix B.5) on a one-step problem with a known Q', () => {
    const q = [3.2, 1.5, 4.0, 1.9, 2.7, 5.5, 1.7, 3.3];
    const B = q.length;
    const kl = (p: Float64Array) => p.reduce((acc, v) => acc + (v > 0 ? v * Math.log(v * B) : 0), 0);

    it('meets the KL bound alpha KL(greedy || prior) to 1e-3', () => {
      for (const alpha of [0.05, 0.1, 0.3, 0.5, 0.9]) {
        const r = trustRegion(q, alpha);
        assert.ok(Math.abs(kl(r.probs) - alpha * Math.log(B)) < 1e-3, `alpha ${alpha}: KL ${kl(r.probs)} vs ${alpha * Math.log(B)}`);
        assert.ok(Math.abs(r.probs.reduce((a, b) => a + b, 0) - 1) < 1e-12);
        // lower cost, more mass
        for (let i = 0; i < B; i++) for (let j = 0; j < B; j++) if (q[i] < q[j]) assert.ok(r.probs[i] >= r.probs[j]);
      }
    });

    it('is the prior at alpha 0 and the greedy policy at alpha 1', () => {
      close(trustRegion(q, 0).probs, new Array<number>(B).fill(1 / B), 1e-15, 'alpha 0');
      close(trustRegion(q, 1).probs, q.map((v) => (v === 1.5 ? 1 : 0)), 0, 'alpha 1');
      // ties share the greedy mass
      close(trustRegion([2, 1, 1, 3], 1).probs, [0, 0.5, 0.5, 0], 0, 'tied minimum');
      // a non-finite Q gets no mass
      assert.equal(trustRegion([1, NaN, 2, 3], 0.5).probs[1], 0);
    });

    it('the mean particle: with meanParticle the last particle takes the policy\'s mean (clipped), corrected by log pi / pi_wide there', () => {
      const policy = { mean: Float64Array.of(0.2, -0.4, 1.7), std: Float64Array.of(0.1, 0.3, 0.2) };
      const qOf = (_s: Float64Array, count: number, z: Float64Array, perState: number) => Float64Array.from({ length: count * perState }, (_, b) => z[b] ** 2);
      const withMean = trustRegionProposal(0.3, 8, 3, [true], qOf, true)(new Float64Array(3), 3, policy, new Rng(2));
      assert.equal(withMean.actions[2], 1, 'the mean 1.7, clipped');
      assert.ok(Math.abs(withMean.logCorrection[2] - Math.log(3)) < 1e-12, `log pi / pi_wide at the mean: ${withMean.logCorrection[2]}`);
      const without = trustRegionProposal(0.3, 8, 3, [true], qOf, false)(new Float64Array(3), 3, policy, new Rng(2));
      // the same draws for the others (the random stream is not shifted), an atom for the last
      close(withMean.actions.subarray(0, 2), without.actions.subarray(0, 2), 0, 'the other particles');
      assert.notEqual(without.actions[2], 1);
    });

    it('Q only where the twisted draw is used: not at the warm start, the draws around it or the mean particle; the pass is the one that evaluates them all', () => {
      const problem: SmcProblem = {
        ...handProblem(),
        policyValue: (x, count) => ({ mean: Float64Array.from(x.subarray(0, count), (v) => -0.3 * v), std: new Float64Array(count).fill(0.4), value: Float64Array.from(x.subarray(0, count), (v) => v * v) }),
      };
      const K = 16;
      const B = 4;
      const rows: number[] = [];
      const qOf = (s: Float64Array, count: number, z: Float64Array, perState: number) => {
        rows.push(count);
        return Float64Array.from({ length: count * perState }, (_, b) => (s[Math.floor(b / perState)] + z[b]) ** 2);
      };
      const guide = Float64Array.of(0.2, -0.1, 0.05, 0);
      for (const resampleEvery of [100, 2]) {
        const run = (honour: boolean) => {
          rows.length = 0;
          const twisted = trustRegionProposal(0.3, B, 2, [true], qOf, true);
          const proposal: Proposal = honour ? twisted : (s, count, policy, rng) => twisted(s, count, policy, rng);
          const r = smcOverTime(problem, settings({ particles: K, depth: 4, resampleEvery, guide, guideDraws: { count: 10, stdScale: 0.1, bounded: [true] } }), proposal, new Rng(9));
          return { r, rows: [...rows] };
        };
        const all = run(false);
        const skipped = run(true);
        // unmarked, every particle's atoms but the mean particle's
        assert.deepEqual(all.rows, [K - 1, K - 1, K - 1, K - 1]);
        // without resampling the warm start stays particle 0: 16 - 1 - 10 - 1 particles twist
        if (resampleEvery === 100) assert.deepEqual(skipped.rows, [4, 4, 4, 4]);
        else assert.ok(skipped.rows.every((c) => c <= 5), `rows ${skipped.rows}`);
        for (const key of ['logWeights', 'rootActions', 'trajectories', 'backedUp', 'states'] as const) close(skipped.r[key], all.r[key], 0, `${key} (resample every ${resampleEvery})`);
      }
    });

    it('atoms drawn wider than the policy (policyStdScale 3) are weighed back to it: the corrected draws have the policy\'s mean and spread', () => {
      // one state, a 1-D unbounded policy N(0.2, 0.1^2), a Q preferring 0.4 (the proposal twists towards it): weighed by pi / q, the draws stand for
      // the policy. alpha 0.1: at larger alpha the temperature chosen from the atoms themselves leaves the weights approximate even for atoms
      // drawn from the policy (measured: mean 0.258 at alpha 0.5, scale 1)
      const propose = trustRegionProposal(0.1, 64, 3, [false], (_s, count, z, perState) => Float64Array.from({ length: count * perState }, (_, b) => 50 * (z[b] - 0.4) ** 2));
      const rng = new Rng(11);
      const policy = { mean: Float64Array.of(0.2), std: Float64Array.of(0.1) };
      let [total, first, second] = [0, 0, 0];
      for (let draw = 0; draw < 20000; draw++) {
        const { actions, logCorrection } = propose(new Float64Array(1), 1, policy, rng);
        const weight = Math.exp(logCorrection[0]);
        total += weight;
        first += weight * actions[0];
        second += weight * actions[0] ** 2;
      }
      const mean = first / total;
      const std = Math.sqrt(second / total - mean * mean);
      assert.ok(Math.abs(mean - 0.2) < 0.01, `mean ${mean}`);
      // weighed as if drawn from the policy (before): mean 0.052, std 0.316
      assert.ok(Math.abs(std / 0.1 - 1) < 0.15, `std ${std}`);
    });
  });

  describe('spo and trtsmc through the planner registry (a prior with untrained networks)', () => {
    const model = resolveModel(pendulumDef, { horizon: 10 });
    let dir: string;
    before(() => {
      dir = untrainedPendulumPrior(model);
    });
    after(() => rmSync(dir, { recursive: true, force: true }));

    for (const name of ['spo', 'trtsmc']) {
      it(`${name}: plans from the state, publishes a whole plan, reports its series and figures, and runs in a session`, async () => {
        const params = resolveRunParams('pendulum', { planner: name, 'model.horizon': 10, 'prior.path': dir, threads: 1, plannerThread: 'main', [`${name}.particles`]: 8 });
        const { planner } = await buildPlanner({ system: 'pendulum', model: params.model, planner: name, params: params.planner, prior: params.prior, backend: 'cpu', threads: 1, seed: 4 });
        const r = await planner.plan({ x0: [0.3, 0], uPrev: [0], reference: [...model.goal] });
        assert.equal(r.controls.length, 10);
        assert.ok(r.controls.every((u) => Number.isFinite(u) && Math.abs(u) <= 1 + 1e-12));
        assert.equal(r.info.depth, 10);
        const series = r.diagnostics!.series!;
        assert.equal(series.ess_ratio.length, 10);
        assert.ok(Math.abs(series.q_hat.reduce((a, b) => a + b, 0) - 1) < 1e-9, 'q-hat sums to 1');
        if (name === 'trtsmc') assert.equal(series.beta.length, 10);
        // the same seed, the same plan: the planner owns its random stream
        const again = await buildPlanner({ system: 'pendulum', model: params.model, planner: name, params: params.planner, prior: params.prior, backend: 'cpu', threads: 1, seed: 4 });
        assert.deepEqual(Array.from((await again.planner.plan({ x0: [0.3, 0], uPrev: [0], reference: [...model.goal] })).controls), Array.from(r.controls));
        // a deadline already passed: the pass stops after its first step and the plan says so
        const late = await planner.plan({ x0: [0.3, 0], uPrev: [0], reference: [...model.goal], deadline: performance.now() - 1 });
        assert.equal(late.info.depth, 1);
        assert.match(late.diagnostics!.notice!, /the deadline stopped the pass at depth 1 of 10/);
        assert.equal(late.controls.length, 10, 'the policy continues the plan to the horizon');
        const session = await ControllerSession.create(params, { lockstep: true });
        try {
          session.onStateMessage(session.codec.encode([0.2, 0.1], 0), 0);
          const tick = await session.tick(0);
          assert.equal(tick.mode, 'ok');
          const status = session.statusMessage(tick);
          assert.ok(status.series.some((x) => x.name === 'q_hat'));
        } finally {
          session.dispose();
        }
      });
    }

    it('distilStdMin floors the std of q-hat\'s first step that train-prior distils, never below the policy\'s least; the weighted spread where it is larger', async () => {
      for (const name of ['spo', 'trtsmc']) {
        const firstSigma = async (over: Record<string, unknown>) => {
          const params = resolveRunParams('pendulum', { planner: name, 'model.horizon': 10, 'prior.path': dir, threads: 1, plannerThread: 'main', [`${name}.particles`]: 8, [`${name}.policyStdScale`]: 1, [`${name}.resampleEvery`]: 100, ...over });
          const { planner } = await buildPlanner({ system: 'pendulum', model: params.model, planner: name, params: params.planner, prior: params.prior, backend: 'cpu', threads: 1, seed: 4 });
          await planner.plan({ x0: [0.3, 0], uPrev: [0], reference: [...model.goal] });
          return planner.firstStep!()!.sigma[0];
        };
        // near-uniform weights (eta huge, no resampling): q-hat spreads as the policy's draws do
        const spread = await firstSigma({ [`${name}.eta`]: 1e6 });
        assert.ok(spread > 0.03, `${name}: spread ${spread}`);
        assert.equal(await firstSigma({ [`${name}.eta`]: 1e6, [`${name}.distilStdMin`]: spread / 2 }), spread, `${name}: a floor below the spread leaves it`);
        assert.equal(await firstSigma({ [`${name}.eta`]: 1e6, [`${name}.distilStdMin`]: 1.5 }), 1.5, `${name}: a floor above it wins`);
        // greedy weights: one particle carries q-hat, which has no spread of its own
        assert.ok(Math.abs(await firstSigma({ [`${name}.eta`]: 1e-9, [`${name}.distilStdMin`]: 0 }) - 0.02) < 1e-12, `${name}: never below the policy's least std`);
        assert.equal(await firstSigma({ [`${name}.eta`]: 1e-9, [`${name}.distilStdMin`]: 0.05 }), 0.05, `${name}: greedy q-hat distilled at the floor`);
      }
    });

    it('needs a prior: without prior.path it is refused with one line', async () => {
      for (const name of ['spo', 'trtsmc']) {
        const params = resolveRunParams('pendulum', { planner: name, threads: 1, plannerThread: 'main' });
        await assert.rejects(ControllerSession.create(params, { lockstep: true }), new RegExp(`planner ${name} plans with a learned prior: set prior.path`));
      }
    });

    it('every registered planner\'s parameters are in the one parameter table, with their prefix', () => {
      const { entries } = controllerParameterTable(resolveRunParams('pendulum', {}));
      for (const p of PLANNERS) {
        for (const key of Object.keys(p.schema)) assert.ok(entries.some((e) => e.key === `${p.name}.${key}`), `${p.name}.${key}`);
      }
      assert.throws(() => resolveRunParams('pendulum', { 'spo.particles': 1 }), /spo\.particles must be >= 2/);
      assert.throws(() => resolveRunParams('pendulum', { planner: 'smc' }), /planner must be one of tsmc, mppi, spo, trtsmc/);
    });
  });
});
