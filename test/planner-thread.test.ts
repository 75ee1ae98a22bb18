import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { buildPlanner, PlannerSpec } from '../src/controller/planner-spec.js';
import { PlannerThread, plannerThreadsClosed } from '../src/controller/planner-thread.js';
import { skipWithoutWebGpu } from './support/webgpu.js';
import { PlanFeedbackMaker } from '../src/controller/feedback.js';
import { resolveRunParams } from '../src/run/setup.js';
import { ControllerSession } from '../src/run/session.js';
import { InputError } from '../src/input-error.js';

function spec(planner: 'tsmc' | 'mppi'): PlannerSpec {
  const params = resolveRunParams('pendulum', { planner, 'mppi.samples': 64, 'mppi.iterations': 2, 'tsmc.particles': 16 });
  return { system: 'pendulum', model: params.model, planner, params: { ...params.planners[planner] }, backend: 'cpu', threads: 1, seed: 7 };
}

const request = (k: number) => ({ x0: [0.1 * k, 0], uPrev: [0], reference: [Math.PI, 0], shiftSteps: 1 });

describe('the planner in its own thread', () => {
  for (const name of ['mppi', 'tsmc'] as const) {
    it(`${name}: the same spec plans exactly the same in its thread as on the main thread (seeded, warm starts included)`, async () => {
      const thread = await PlannerThread.start(spec(name));
      const local = await buildPlanner(spec(name));
      try {
        for (let k = 0; k < 3; k++) {
          const [a, b] = [await thread.plan(request(k)), await local.planner.plan(request(k))];
          assert.deepEqual(Array.from(a.controls), Array.from(b.controls), `plan ${k}`);
          assert.equal(a.cost, b.cost);
        }
        // a live change crosses over and applies before the next plan
        const change = name === 'tsmc' ? { lambda: 0.5 } : { temperature: 0.5 };
        thread.updateParams(change);
        local.planner.updateParams(change);
        assert.deepEqual(Array.from((await thread.plan(request(3))).controls), Array.from((await local.planner.plan(request(3))).controls));
      } finally {
        thread.dispose();
        local.backend.dispose();
      }
    });
  }

  it('a plan\'s diagnostics cross the thread: TSMC\'s tempering ladder, MPPI\'s cost spread and sigma', async () => {
    const tsmc = await PlannerThread.start(spec('tsmc'));
    const mppi = await PlannerThread.start(spec('mppi'));
    try {
      const t = await tsmc.plan(request(1));
      const { ladder_beta: beta, ladder_ess_ratio: essRatio } = t.diagnostics!.series!;
      assert.equal(beta.length, t.info.levels);
      assert.equal(essRatio.length, t.info.levels);
      assert.equal(beta.at(-1), t.info.beta);
      for (let k = 1; k < beta.length; k++) assert.ok(beta[k] > beta[k - 1], 'beta rises along the ladder');
      assert.ok(essRatio.every((r) => r > 0 && r <= 1 + 1e-9));
      const m = await mppi.plan(request(1));
      const spread = m.diagnostics!.series!.cost_spread;
      assert.equal(spread.length, 4);
      for (let k = 1; k < 4; k++) assert.ok(spread[k] >= spread[k - 1], 'min <= p10 <= median <= p90');
      assert.equal(m.diagnostics!.series!.sigma.length, 1);
    } finally {
      tsmc.dispose();
      mppi.dispose();
    }
  });

  it('asked for, the plan\'s feedback (gains and the iLQG refinement) is built in the planner\'s thread, equal to the command side\'s', async () => {
    const thread = await PlannerThread.start(spec('mppi'));
    const local = await buildPlanner(spec('mppi'));
    const maker = new PlanFeedbackMaker(local.model);
    try {
      for (const refine of [false, true]) {
        const req = { ...request(1), feedback: { refine } };
        const [a, b] = [await thread.plan(req), await local.planner.plan(req)];
        assert.ok(a.feedback, 'the thread built the feedback');
        assert.equal(b.feedback, undefined, 'a planner on this thread builds none: the controller does');
        const want = maker.make(req.x0, b.controls, req.uPrev, req.reference, refine);
        assert.deepEqual(Array.from(a.feedback.gains!), Array.from(want.gains!));
        assert.deepEqual(Array.from(a.feedback.controls), Array.from(want.controls));
        assert.deepEqual(Array.from(a.feedback.states), Array.from(want.states));
        assert.equal(a.feedback.refinement !== undefined, refine);
        assert.ok(a.info.feedbackMs >= 0);
      }
      assert.equal((await thread.plan(request(2))).feedback, undefined, 'not asked for, not built');
    } finally {
      thread.dispose();
      local.backend.dispose();
    }
  });

  it('under a deadline the search leaves room for the feedback: the reserve is the longest feedback time of the latest 20 plans', async () => {
    const thread = await PlannerThread.start(spec('mppi'));
    try {
      const feedbackMs: number[] = [];
      for (let k = 0; k < 24; k++) {
        const r = await thread.plan({ ...request(k % 3), feedback: { refine: k % 2 === 0 }, deadline: performance.now() + 1000 });
        const expected = k === 0 ? 0 : Math.max(...feedbackMs.slice(-20));
        assert.equal(r.info.feedbackReserveMs, expected, `plan ${k}`);
        feedbackMs.push(r.info.feedbackMs);
      }
      const unhurried = await thread.plan({ ...request(0), feedback: { refine: false } });
      assert.equal(unhurried.info.feedbackReserveMs, undefined, 'without a deadline there is nothing to reserve');
    } finally {
      thread.dispose();
    }
  });

  it('plannerNice: the planner\'s thread and its kernel threads run at that niceness, the rest of the process at its own (Linux)', async function () {
    if (process.platform !== 'linux') this.skip();
    const niceOfThreads = () => readdirSync('/proc/self/task').map((tid) => Number(readFileSync(`/proc/self/task/${tid}/stat`, 'utf8').split(') ')[1].split(' ')[16]));
    const before = niceOfThreads().filter((n) => n === 7).length;
    const mainNice = () => Number(readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8').split(') ')[1].split(' ')[16]);
    const mainBefore = mainNice();
    const thread = await PlannerThread.start({ ...spec('mppi'), threads: 2, nice: 7 });
    try {
      assert.equal(thread.priorityProblem, undefined);
      await thread.plan(request(0));
      const after = niceOfThreads();
      // the planner thread and the one kernel worker it started
      assert.ok(after.filter((n) => n === 7).length - before >= 2, `thread niceness ${after.join(',')}`);
      assert.equal(mainNice(), mainBefore, 'this (the command) thread keeps its own');
    } finally {
      thread.dispose();
    }
  });

  it('commandPriority: the command thread at real-time priority, the planner\'s threads and threads started later normal; normal again at dispose (Linux; where not permitted, a note says why)', async function () {
    if (process.platform !== 'linux') this.skip();
    // /proc/<pid>/task/<tid>/stat: fields 40 (rt_priority) and 41 (policy) counted from 1; the split starts at field 3
    const scheduling = (tid: string | number) => {
      const f = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8').split(') ')[1].split(' ');
      return { priority: Number(f[37]), policy: Number(f[38]) };
    };
    const normal = { priority: 0, policy: 0 };
    const fifo = (priority: number) => ({ priority, policy: 1 });
    const tasks = () => new Set(readdirSync('/proc/self/task'));
    const before = tasks();
    const params = resolveRunParams('pendulum', { planner: 'mppi', threads: 2, 'mppi.samples': 64, commandPriority: 20 });
    const session = await ControllerSession.create(params, { lockstep: false });
    const started = [...tasks()].filter((t) => !before.has(t));
    try {
      const refused = session.notes.find((n) => n.startsWith('commandPriority 20: '));
      if (refused) {
        // an unprivileged user: the note says why, and everything runs as before
        assert.match(refused, /not permitted: real-time priority needs CAP_SYS_NICE or an rtprio limit/);
        assert.deepEqual(scheduling(process.pid), normal);
        return;
      }
      assert.deepEqual(scheduling(process.pid), fifo(20), 'the command thread');
      // the planner's thread and its one kernel worker
      assert.ok(started.length >= 2 && started.every((t) => scheduling(t).policy === normal.policy), `threads started: ${started.map((t) => JSON.stringify(scheduling(t))).join(', ')}`);
      // a thread the command thread starts now does not inherit its priority (reset on fork)
      const { Worker } = await import('node:worker_threads');
      const beforeWorker = tasks();
      const w = new Worker('require("node:worker_threads").parentPort.postMessage(0); setTimeout(() => {}, 500)', { eval: true });
      await new Promise((resolve) => w.once('message', resolve));
      const fresh = [...tasks()].filter((t) => !beforeWorker.has(t));
      assert.ok(fresh.length >= 1 && fresh.every((t) => scheduling(t).policy === normal.policy), 'a later thread runs normally');
      await w.terminate();
    } finally {
      session.dispose();
    }
    assert.deepEqual(scheduling(process.pid), normal, 'normal again after dispose');
    // a planner on the command thread would plan at real-time priority: refused before anything starts
    await assert.rejects(ControllerSession.create(resolveRunParams('pendulum', { planner: 'mppi', commandPriority: 20, plannerThread: 'main' }), { lockstep: false }),
      (e: Error) => e instanceof InputError && /commandPriority 20 needs plannerThread: worker/.test(e.message));
    assert.throws(() => resolveRunParams('pendulum', { commandPriority: 100 }), /commandPriority must be <= 99, got 100/);
  });

  it('a bad spec fails at start with the builder\'s reason', async () => {
    await assert.rejects(PlannerThread.start({ ...spec('mppi'), model: { horizon: -3 } }), /horizon/);
  });

  it('a thread that dies fails its plan with the reason; the next plan starts a fresh thread', async () => {
    const thread = await PlannerThread.start(spec('mppi'));
    try {
      thread.blockFor(200);
      const pending = thread.plan(request(0));
      // the thread is lost while it is blocked (standing in for a crash in native code)
      await (thread as unknown as { worker: { terminate(): Promise<number> } }).worker.terminate();
      await assert.rejects(pending, /the planner thread exited \(code 1\)/);
      const again = await thread.plan(request(0));
      assert.ok(again.controls.every(Number.isFinite));
    } finally {
      thread.dispose();
    }
  });

  it('the thread reports its own heap, in use and committed; none once disposed', async () => {
    const thread = await PlannerThread.start(spec('tsmc'));
    for (let k = 0; k < 3; k++) await thread.plan(request(k));
    const heap = await thread.heap();
    thread.dispose();
    assert.ok(heap, 'a running thread answers');
    assert.ok(heap.usedBytes > 0 && heap.usedBytes <= heap.committedBytes, `used ${heap.usedBytes} <= committed ${heap.committedBytes}`);
    assert.equal(await thread.heap(), undefined);
  });

  it('plans after dispose are refused with a reason', async () => {
    const thread = await PlannerThread.start(spec('mppi'));
    thread.dispose();
    await assert.rejects(thread.plan(request(0)), /shut down/);
  });

  it('a disposed thread ends after the work it is in (a GPU plan stopped mid-wait aborts the process), and is terminated if that hangs', async () => {
    /** ms from dispose until the thread has ended, with the thread busy for `busyMs` (as a plan awaiting the GPU would be) */
    const endsAfter = async (busyMs: number) => {
      const thread = await PlannerThread.start(spec('mppi'));
      thread.blockFor(busyMs);
      const t0 = performance.now();
      thread.dispose();
      await plannerThreadsClosed();
      return performance.now() - t0;
    };
    // busy: it ends after its work, not at once and not at the grace
    const endedMs = await endsAfter(600);
    assert.ok(endedMs >= 550 && endedMs < 1900, `ended after ${endedMs.toFixed(0)} ms`);
    // hung for longer than the grace: terminated at 2 s
    const hungMs = await endsAfter(10_000);
    assert.ok(hungMs >= 1900 && hungMs < 4000, `terminated after ${hungMs.toFixed(0)} ms`);
  });

  it('a GPU planner thread busy past the CPU\'s grace (its first plans compile the kernels) still ends by itself, not terminated', async function () {
    if (await skipWithoutWebGpu(this, 'the GPU planner thread\'s grace')) return;
    const thread = await PlannerThread.start({ ...spec('mppi'), backend: 'webgpu' });
    await thread.plan(request(0));
    thread.blockFor(3000);
    const t0 = performance.now();
    thread.dispose();
    await plannerThreadsClosed();
    const endedMs = performance.now() - t0;
    assert.ok(endedMs >= 2900 && endedMs < 10_000, `ended after ${endedMs.toFixed(0)} ms`);
  });
});
