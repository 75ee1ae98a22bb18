import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { Controller } from '../src/controller/controller.js';
import { MppiPlanner, PlanRequest, PlanResult, RecedingPlanner } from '../src/controller/receding.js';
import { CpuBackend } from '../src/kernels/cpu.js';
import { resolveParams } from '../src/params.js';
import { MPPI_PARAMS } from '../src/planners/mppi.js';
import { model } from './helpers.js';

const pendulum = model('pendulum');

/** A real MPPI planner, optionally failing or stalling on chosen calls (fault injection). */
function faultyPlanner(faults: { throwOn?: Set<number>; slowOn?: Set<number>; slowMs?: number; nanOn?: Set<number> }): RecedingPlanner & { calls: number } {
  const real = new MppiPlanner(pendulum, new CpuBackend(pendulum, { threads: 1 }), resolveParams('mppi', MPPI_PARAMS, { samples: 64, iterations: 2 }));
  const wrapper = {
    name: 'mppi' as const,
    calls: 0,
    reset: () => real.reset(),
    updateParams: (changes: Record<string, unknown>) => real.updateParams(changes),
    async plan(rng: Parameters<RecedingPlanner['plan']>[0], req: PlanRequest): Promise<PlanResult> {
      const call = wrapper.calls++;
      if (faults.throwOn?.has(call)) throw new Error('rollout backend lost');
      if (faults.slowOn?.has(call)) await sleep(faults.slowMs ?? 50);
      const r = await real.plan(rng, req);
      if (faults.nanOn?.has(call)) r.controls[0] = NaN;
      return r;
    },
  };
  return wrapper;
}

function controller(planner: RecedingPlanner, enforceDeadline = false, budgetMs = 1000) {
  return new Controller(pendulum, planner, { periodS: 0.1, budgetMs, staleTimeoutS: 0.3, enforceDeadline, seed: 1 });
}

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
    assert.match(failed.reason, /planner error: rollout backend lost; using the previous plan/);
    assert.deepEqual(failed.control, ok.plan![1], 'the previous plan\'s next action');
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
    assert.match(r.reason, /no previous plan, safe command/);
  });

  it('a non-finite plan is treated as a planner failure', async () => {
    const c = controller(faultyPlanner({ nanOn: new Set([0]) }));
    c.onState([0.3, 0], 0);
    const r = await c.tick(0);
    assert.equal(r.mode, 'fallback');
    assert.match(r.reason, /non-finite control at index 0/);
    assert.ok(finiteWithinLimits(r.control));
  });

  it('an overrun uses the previous plan\'s next action and counts the miss', async () => {
    const c = controller(faultyPlanner({ slowOn: new Set([1]), slowMs: 60 }), true, 30);
    c.onState([0.3, 0], 0);
    const first = await c.tick(0);
    assert.equal(first.mode, 'ok');
    c.onState([0.31, 0], 0.1);
    const late = await c.tick(0.1);
    assert.equal(late.mode, 'late');
    assert.deepEqual(late.control, first.plan![1]);
    assert.equal(c.counters.deadlineMisses, 1);
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
