import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { AppliedPlan, Controller, sampleAt } from '../src/controller/controller.js';
import { PlanRequest, PlanResult, RecedingPlanner } from '../src/planners/receding.js';
import { MppiPlanner } from '../src/planners/mppi/receding.js';
import { CpuBackend } from '../src/kernels/cpu.js';
import { Rng } from '../src/random.js';
import { resolveParams } from '../src/params.js';
import { MPPI_PARAMS } from '../src/planners/mppi/mppi.js';
import { model } from './helpers.js';
import { fromPhysical } from '../src/models/model.js';

const pendulum = model('pendulum');

/** A real MPPI planner, optionally failing or stalling on chosen calls (fault injection). */
function faultyPlanner(faults: { throwOn?: Set<number>; slowOn?: Set<number>; slowMs?: number; nanOn?: Set<number> }): RecedingPlanner & { calls: number } {
  const real = new MppiPlanner(pendulum, new CpuBackend(pendulum, { threads: 1 }), resolveParams('mppi', MPPI_PARAMS, { samples: 64, iterations: 2 }), new Rng(1));
  const wrapper = {
    name: 'mppi' as const,
    calls: 0,
    reset: () => real.reset(),
    updateParams: (changes: Record<string, unknown>) => real.updateParams(changes),
    async plan(req: PlanRequest): Promise<PlanResult> {
      const call = wrapper.calls++;
      if (faults.throwOn?.has(call)) throw new Error('rollout backend lost');
      if (faults.slowOn?.has(call)) await sleep(faults.slowMs ?? 50);
      const r = await real.plan(req);
      if (faults.nanOn?.has(call)) r.controls[0] = NaN;
      return r;
    },
  };
  return wrapper;
}

function controller(planner: RecedingPlanner, enforceDeadline = false, budgetMs = 1000) {
  return new Controller(pendulum, planner, { periodS: 0.1, budgetMs, staleTimeoutS: 0.3, enforceDeadline });
}

/** Row k of a followed plan. */
const row = (plan: AppliedPlan | null, k: number) => Array.from(plan!.controls.subarray(k, k + 1));

const finiteWithinLimits = (u: number[]) => u.every((v) => Number.isFinite(v) && v >= -1 && v <= 1);

describe('controller fault behaviour', () => {
  it('publishes the safe command until a state arrives', async () => {
    const c = controller(faultyPlanner({}));
    const r = await c.tick(0);
    assert.equal(r.mode, 'waiting');
    assert.deepEqual(r.control, [0]);
  });

  it('state stops: safe command once the timeout passes, normal control after recovery', async () => {
    const c = controller(faultyPlanner({}));
    c.onState([0.3, 0], 0);
    const first = await c.tick(0);
    assert.equal(first.mode, 'ok');
    // no new state for 0.2 s: still within the 0.3 s timeout
    assert.equal((await c.tick(0.2)).mode, 'ok');
    const stale = await c.tick(0.4);
    assert.equal(stale.mode, 'stale');
    assert.deepEqual(stale.control, [0]);
    assert.match(stale.reason, /no fresh state for 0\.400 s \(timeout 0\.3 s\)/);
    assert.equal((await c.tick(0.5)).mode, 'stale');
    c.onState([0.35, 0.1], 0.6);
    const back = await c.tick(0.6);
    assert.equal(back.mode, 'ok');
    assert.equal(c.counters.staleTicks, 2);
  });

  it('rejects NaN, infinite and wrongly sized states with a reason, and never outputs NaN', async () => {
    const c = controller(faultyPlanner({}));
    c.onState([0.3, 0], 0);
    assert.match(c.onState([NaN, 0], 0.1)!, /state\[0\] is not a finite number \(NaN\)/);
    assert.match(c.onState([0, Infinity], 0.1)!, /state\[1\] is not a finite number/);
    assert.match(c.onState([0, 0, 0], 0.1)!, /state has 3 values, expected 2/);
    assert.match(c.onState([0, 0], NaN)!, /stamp is not finite/);
    assert.equal(c.counters.rejectedStates, 4);
    const r = await c.tick(0.1);
    assert.equal(r.mode, 'ok', 'the last good state is still fresh');
    assert.ok(finiteWithinLimits(r.control));
    // only NaN states from now on: the good one goes stale and the safe command follows
    for (let t = 0.2; t < 0.6; t += 0.1) c.onState([NaN, NaN], t);
    const later = await c.tick(0.6);
    assert.equal(later.mode, 'stale');
    assert.ok(finiteWithinLimits(later.control));
  });

  it('a planner exception does not stop the loop: previous plan, then safe command, then recovery', async () => {
    const planner = faultyPlanner({ throwOn: new Set([1, 2]) });
    const c = controller(planner);
    c.onState([0.3, 0], 0);
    const ok = await c.tick(0);
    c.onState([0.3, 0], 0.1);
    const failed = await c.tick(0.1);
    assert.equal(failed.mode, 'fallback');
    assert.match(failed.reason, /planner error: rollout backend lost; following the previous plan/);
    assert.deepEqual(failed.control, row(ok.plan, 1), 'the previous plan\'s next action');
    c.onState([0.3, 0], 0.2);
    assert.equal((await c.tick(0.2)).mode, 'fallback');
    c.onState([0.3, 0], 0.3);
    assert.equal((await c.tick(0.3)).mode, 'ok');
    assert.equal(c.counters.plannerErrors, 2);
  });

  it('a planner exception before any plan exists gives the safe command', async () => {
    const c = controller(faultyPlanner({ throwOn: new Set([0]) }));
    c.onState([0.3, 0], 0);
    const r = await c.tick(0);
    assert.equal(r.mode, 'fallback');
    assert.deepEqual(r.control, [0]);
    assert.match(r.reason, /no previous plan: safe command/);
  });

  it('a non-finite plan is treated as a planner failure', async () => {
    const c = controller(faultyPlanner({ nanOn: new Set([0]) }));
    c.onState([0.3, 0], 0);
    const r = await c.tick(0);
    assert.equal(r.mode, 'fallback');
    assert.match(r.reason, /non-finite control at index 0/);
    assert.ok(finiteWithinLimits(r.control));
  });

  it('a plan not back by the time it should take over: the previous plan is followed and the miss counted', async () => {
    const c = controller(faultyPlanner({ slowOn: new Set([1]), slowMs: 60 }), true, 30);
    c.onState([0.3, 0], 0);
    const first = await c.tick(0);
    assert.equal(first.mode, 'ok');
    c.onState([0.31, 0], 0.1);
    // tick 0.1 starts the plan for 0.2 (from the state predicted for then) and does not wait for it
    const started = await c.tick(0.1);
    assert.equal(started.mode, 'ok');
    assert.deepEqual(started.control, row(first.plan, 1));
    c.onState([0.32, 0], 0.2);
    const late = await c.tick(0.2);
    assert.equal(late.mode, 'late');
    assert.match(late.reason, /the planner is still working on the plan asked for \d+ ms ago \(budget 30\.0 ms\); following the previous plan/);
    assert.deepEqual(late.control, row(first.plan, 2));
    assert.equal(c.counters.deadlineMisses, 1);
    await sleep(80);
    c.onState([0.33, 0], 0.3);
    const back = await c.tick(0.3);
    assert.equal(back.mode, 'ok', 'the late plan took over when it landed');
    assert.ok(back.planned && back.solveMs >= 55, `its solve time is reported (${back.solveMs} ms)`);
    assert.equal(back.plan!.startS, 0.2);
  });

  it('real time: the next plan is handed to the planner after the tick\'s command is out (at the next turn of the event loop), or first thing at a tick that comes sooner', async () => {
    const planner = faultyPlanner({});
    const c = controller(planner, true, 50);
    c.onState([0.3, 0], 0);
    await c.tick(0);
    assert.equal(planner.calls, 1, 'the first plan, waited for');
    c.onState([0.31, 0], 0.1);
    const tick = await c.tick(0.1);
    assert.equal(tick.mode, 'ok');
    assert.equal(planner.calls, 1, 'the command came back before the plan was asked for');
    await new Promise<void>((resolve) => setImmediate(resolve));
    assert.equal(planner.calls, 2, 'handed over at the next turn');
    await sleep(30);
    c.onState([0.32, 0], 0.2);
    await c.tick(0.2);
    assert.equal(planner.calls, 2);
    // a door that ticks again at once: the deferred plan goes out first
    c.onState([0.33, 0], 0.3);
    await c.tick(0.3);
    assert.equal(planner.calls, 3);
  });

  it('rehearse: plans from the state, then from where each plan\'s commands take the model, then forgets it all (the first tick plans from the state again, the planner reset)', async () => {
    const inner = faultyPlanner({});
    const asked: number[][] = [];
    const answered: Float64Array[] = [];
    let resets = 0;
    const planner: RecedingPlanner = {
      name: 'mppi', updateParams: (c) => inner.updateParams(c),
      reset: () => {
        resets++;
        inner.reset();
      },
      async plan(req) {
        asked.push([...req.x0]);
        const r = await inner.plan(req);
        answered.push(r.controls.slice());
        return r;
      },
    };
    const c = controller(planner, true, 1000);
    c.onState([0.3, 0], 0);
    const plans = await c.rehearse(0.3);
    assert.ok(plans >= 2 && asked.length === plans, `${plans} plans`);
    // in the model's own coordinates
    const start = fromPhysical(pendulum, [0.3, 0]);
    assert.deepEqual(asked[0], start);
    const steps = Math.round(0.1 / pendulum.dtS);
    for (let k = 1; k < plans; k++) {
      // the model rolled one plan period under the previous plan's commands (clamped, zero-order hold)
      let x = asked[k - 1];
      for (let j = 0; j < steps; j++) x = c.stepModel(x, [Math.max(-1, Math.min(1, answered[k - 1][j]))]);
      assert.deepEqual(asked[k], x, `plan ${k} starts where plan ${k - 1} leads`);
    }
    assert.notDeepEqual(asked[plans - 1], asked[0], 'the rehearsal moved');
    assert.equal(resets, 1);
    const first = await c.tick(0);
    assert.equal(first.mode, 'ok');
    assert.deepEqual(asked[plans], start, 'the first tick plans from the state');
    assert.equal(first.plan!.startS, 0);
  });

  it('clamps to the limits and validates run-time references', async () => {
    const c = controller(faultyPlanner({}));
    assert.match(c.setReference([1])!, /goal has 1 values, expected 2/);
    assert.match(c.setReference([NaN, 0])!, /goal\[0\] is not a finite number/);
    assert.equal(c.setReference([Math.PI, 0]), undefined);
    c.onState([0, 0], 0);
    for (let t = 0; t < 1; t += 0.1) {
      c.onState([0, 0], t);
      assert.ok(finiteWithinLimits((await c.tick(t)).control));
    }
  });
});

describe('commands read from the plan by time', () => {
  it('sampleAt: zero-order hold takes the step\'s row, linear blends towards the next, the last row is held', () => {
    const plan = Float64Array.from([0, 10, 1, 11, 2, 12]);
    assert.deepEqual(sampleAt(plan, 2, 0.5, 'zoh'), [0, 10]);
    assert.deepEqual(sampleAt(plan, 2, 1.999999999999, 'zoh'), [2, 12], 'a time a rounding error short of a step boundary is on it');
    assert.deepEqual(sampleAt(plan, 2, 0.25, 'linear'), [0.25, 10.25]);
    assert.deepEqual(sampleAt(plan, 2, 2.5, 'linear'), [2, 12]);
    assert.deepEqual(sampleAt(plan, 2, 7, 'zoh'), [2, 12]);
  });

  /** A planner that records its requests and returns a ramp 0, 0.1, 0.2, ... (clamped to the limits). */
  function rampPlanner() {
    const requests: { x0: readonly number[]; shiftSteps?: number }[] = [];
    const planner: RecedingPlanner = {
      name: 'mppi', reset: () => {}, updateParams: () => {},
      async plan(req) {
        requests.push({ x0: [...req.x0], shiftSteps: req.shiftSteps });
        return { controls: Float64Array.from({ length: pendulum.horizon }, (_, k) => Math.min(1, 0.1 * k)), cost: requests.length, info: {} };
      },
    };
    return { planner, requests };
  }

  it('100 Hz commands from 10 Hz plans (lockstep): one plan per plan period, commands in between by time, zoh or linear', async () => {
    for (const interpolation of ['zoh', 'linear'] as const) {
      const { planner, requests } = rampPlanner();
      const c = new Controller(pendulum, planner, { periodS: 0.01, planPeriodS: 0.1, budgetMs: 80, staleTimeoutS: 1, enforceDeadline: false, interpolation });
      const controls: number[] = [];
      for (let k = 0; k < 30; k++) {
        c.onState([0.3, 0], k * 0.01);
        controls.push((await c.tick(k * 0.01)).control[0]);
      }
      assert.equal(requests.length, 3, 'plans asked for at 0, 0.1 and 0.2 s');
      // the first plan takes effect at once; later ones one plan period after they are asked for
      // (from the state predicted for then): at 0.2 s and 0.3 s, the warm start shifted to match
      assert.deepEqual(requests.map((r) => r.shiftSteps), [1, 2, 1]);
      assert.notDeepEqual(requests[1].x0, requests[0].x0, 'the later plan starts from the predicted state');
      const at = (k: number) => controls[k];
      const close = (k: number, want: number) => assert.ok(Math.abs(at(k) - want) < 1e-12, `command ${k} (${interpolation}) is ${at(k)}, expected ${want}`);
      if (interpolation === 'zoh') {
        close(5, 0); // first plan, row 0
        close(15, 0.1); // first plan, row 1
        close(20, 0); // the second plan takes over at 0.2 s, row 0
        close(29, 0);
      } else {
        close(5, 0.05); // halfway between the first plan's rows 0 and 1
        close(17, 0.17);
        close(25, 0.05); // the second plan, halfway through its first step
      }
    }
  });

  it('a plan older than planTimeoutS (or its horizon) is not followed: safe command with the reason', async () => {
    let calls = 0;
    const { planner } = rampPlanner();
    const hanging: RecedingPlanner = { ...planner, plan: (req) => (calls++ === 0 ? planner.plan(req) : new Promise(() => {})) };
    const c = new Controller(pendulum, hanging, { periodS: 0.1, budgetMs: 50, staleTimeoutS: 1, enforceDeadline: true, planTimeoutS: 0.25 });
    c.onState([0.3, 0], 0);
    assert.equal((await c.tick(0)).mode, 'ok');
    c.onState([0.3, 0], 0.1);
    assert.equal((await c.tick(0.1)).mode, 'ok', 'the next plan is on its way');
    c.onState([0.3, 0], 0.2);
    const late = await c.tick(0.2);
    assert.equal(late.mode, 'late');
    assert.ok(Math.abs(late.control[0] - 0.2) < 1e-12, 'row 2 of the plan in effect');
    c.onState([0.3, 0], 0.3);
    const old = await c.tick(0.3);
    assert.equal(old.mode, 'late');
    assert.deepEqual(old.control, c.safeCommand);
    assert.match(old.reason, /the latest plan is 0\.300 s old, past its planTimeoutS 0\.25 s: safe command/);
    assert.equal(old.plan, null);
  });
});
