import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { McapStreamReader } from '@mcap/core';
import protobuf from 'protobufjs';
import descriptor from 'protobufjs/ext/descriptor/index.js';
import { GoalTracker, runLoop } from '../src/run/loop.js';
import { Rng } from '../src/random.js';
import { readParamsFile } from '../src/run/params-file.js';
import { blockPlannerThread } from '../src/controller/planner-thread.js';
import { assemble, resolveRunParams } from '../src/run/setup.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const CONFIG = fileURLToPath(new URL('../../launch/config/pendulum.yaml', import.meta.url));

async function pendulumRun(planner: 'tsmc' | 'mppi', seed: number, extra: Record<string, unknown> = {}, durationS = 12) {
  const params = resolveRunParams('pendulum', { ...readParamsFile(CONFIG), planner, seed, 'sim.x0': [0, 0], ...extra });
  const { session, sim } = await assemble(params, { lockstep: true });
  try {
    return await runLoop(sim, session, { durationS, lockstep: true });
  } finally {
    session.dispose();
  }
}

describe('the goal tracker', () => {
  /** the definition, over the whole trace: the first stay of holdS or more, and the share of ticks in the goal from its start */
  function fromTrace(trace: boolean[], periodS: number, holdS: number) {
    let entered: number | null = null;
    for (let k = 0; k < trace.length; k++) {
      if (!trace[k]) {
        entered = null;
        continue;
      }
      entered ??= k;
      if ((k - entered) * periodS >= holdS - 1e-9) {
        const after = trace.slice(entered);
        return { timeToGoalS: entered * periodS, heldFraction: after.filter(Boolean).length / after.length };
      }
    }
    return { timeToGoalS: null, heldFraction: null };
  }

  it('finds the held stay and the share in the goal after it, tick by tick, as the whole trace defines them', () => {
    const rng = new Rng(5);
    let reached = 0;
    for (let run = 0; run < 200; run++) {
      // runs of in/out ticks of random lengths, so some stays are long enough and some not
      const trace: boolean[] = [];
      let inside = rng.uniform() < 0.5;
      while (trace.length < 120) {
        const length = 1 + Math.floor(rng.uniform() * (inside ? 24 : 10));
        for (let i = 0; i < length; i++) trace.push(inside);
        inside = !inside;
      }
      const periodS = 0.05;
      const holdS = 1;
      const tracker = new GoalTracker(holdS);
      trace.forEach((g, k) => tracker.observe(k * periodS, g));
      const want = fromTrace(trace, periodS, holdS);
      assert.equal(tracker.ticks, trace.length);
      assert.equal(tracker.timeToGoalS, want.timeToGoalS, `run ${run}`);
      assert.equal(tracker.heldFraction, want.heldFraction, `run ${run}`);
      if (want.timeToGoalS !== null) reached++;
    }
    assert.ok(reached > 20 && reached < 180, `both outcomes occur (${reached}/200 reached)`);
  });
});

describe('embedded simulation in the loop (pendulum swing-up, lockstep, noisy plant)', () => {
  for (const planner of ['mppi', 'tsmc'] as const) {
    it(`${planner} swings up within 5 s and holds the goal region for 5 s`, async () => {
      const { summary, records } = await pendulumRun(planner, planner === 'tsmc' ? 0 : 3);
      assert.ok(summary.success, JSON.stringify(summary));
      assert.ok(summary.timeToGoalS! <= 5, `time to goal ${summary.timeToGoalS}`);
      assert.equal(summary.plannerErrors, 0);
      for (const r of records) assert.ok(r.tick.control.every(Number.isFinite));
    });
  }

  it('tsmc warm ticks start from the carried particles at warmStartBeta and need few levels', async () => {
    const { records } = await pendulumRun('tsmc', 1, {}, 3);
    const levels = records.map((r) => r.tick.info.levels);
    const median = [...levels].sort((x, y) => x - y)[Math.floor(levels.length / 2)];
    assert.ok(median <= 5, `median levels per warm tick ${median} (a cold solve takes about 15)`);
    const cold = await pendulumRun('tsmc', 1, { 'tsmc.warmStartBeta': 0 }, 3);
    const coldLevels = cold.records.map((r) => r.tick.info.levels).sort((x, y) => x - y)[Math.floor(levels.length / 2)];
    assert.ok(coldLevels >= 2 * median, `tempering from the prior every tick takes more levels (${coldLevels} vs ${median})`);
  });

  it('is deterministic in lockstep: same seed, same run', async () => {
    const a = await pendulumRun('mppi', 5, {}, 2);
    const b = await pendulumRun('mppi', 5, {}, 2);
    assert.deepEqual(a.records.map((r) => r.tick.control), b.records.map((r) => r.tick.control));
  });

  it('survives a sensor outage: safe command during it, control again after', async () => {
    const params = resolveRunParams('pendulum', { ...readParamsFile(CONFIG), planner: 'mppi', seed: 1, 'sim.x0': [0.2, 0] });
    const { session, sim } = await assemble(params, { lockstep: true });
    const { records, summary } = await runLoop(sim, session, {
      durationS: 3, lockstep: true,
      // no measurements from 1.0 s to 2.0 s, then NaN readings for 0.3 s
      measurementFilter: (t, y) => (t >= 1 && t < 2 ? undefined : t >= 2 && t < 2.3 ? [NaN, NaN] : y),
    });
    const modeAt = (t: number) => records.find((r) => Math.abs(r.timeS - t) < 1e-9)!.tick.mode;
    assert.equal(modeAt(1.3), 'ok', 'within the 0.5 s timeout');
    assert.equal(modeAt(1.6), 'stale');
    assert.deepEqual(records.find((r) => Math.abs(r.timeS - 1.6) < 1e-9)!.tick.control, [0]);
    assert.equal(modeAt(2.2), 'stale', 'NaN readings are rejected, so the state stays stale');
    assert.equal(modeAt(2.5), 'ok', 'recovered');
    assert.equal(summary.rejectedStates, 3);
    for (const r of records) assert.ok(r.tick.control.every(Number.isFinite));
  });
});

describe('a stalled planner does not hold the commands back (real time)', () => {
  /** A real-time pendulum run whose 10th plan after its first tick finds the planner's thread blocked for 5 periods (as a hung kernel would block it). */
  async function stalledRun(plannerThread: 'worker' | 'main') {
    const params = resolveRunParams('pendulum', {
      ...readParamsFile(CONFIG), planner: 'mppi', plannerThread, threads: 1, 'mppi.samples': 64, 'mppi.iterations': 2, 'sim.x0': [0.2, 0],
    });
    // plans of the run, counted from its first tick (the warm-up's rehearsal plans before it)
    let calls = 0;
    let ticking = false;
    const { session, sim } = await assemble(params, {
      lockstep: false,
      wrapPlanner: (inner) => ({
        name: inner.name, reset: () => inner.reset(), updateParams: (c) => inner.updateParams(c),
        plan: (req) => {
          if (ticking && calls++ === 10) blockPlannerThread(inner, 500);
          return inner.plan(req);
        },
      }),
    });
    const wallMs: number[] = [];
    const modes: string[] = [];
    try {
      await runLoop(sim, session, {
        durationS: 3, lockstep: false,
        onTick: (r) => {
          ticking = true;
          wallMs.push(performance.now());
          modes.push(`${r.tick.mode}: ${r.tick.reason}`);
          assert.ok(r.tick.control.every(Number.isFinite));
        },
      });
    } finally {
      session.dispose();
    }
    // each command against its schedule (tick k at k periods after the first)
    const lateness = wallMs.map((t, k) => Math.abs(t - wallMs[0] - 100 * k));
    const sorted = [...lateness].sort((a, b) => a - b);
    return {
      modes, lateness, errors: session.controller.counters.plannerErrors,
      p99: sorted[Math.min(sorted.length - 1, Math.ceil(0.99 * sorted.length) - 1)],
      listing: lateness.map((d, k) => `${k}: +${d.toFixed(1)} ms ${modes[k]}`).join('\n'),
    };
  }

  it('the planner thread blocked for 5 periods: a command still leaves every period, following the previous plan, and control resumes', async () => {
    const { modes, p99, lateness, listing, errors } = await stalledRun('worker');
    console.log(`      command timing error p99 ${p99.toFixed(2)} ms (period 100 ms) through a 500 ms block of the planner's thread`);
    // the behaviour, not a timing target (those are bench soak's): no command waits for the 500 ms block,
    // as every one does with the planner on the main thread (the next test); half a period leaves room for a busy machine
    assert.ok(Math.max(...lateness) < 50, `every command within half the 100 ms period of its schedule\n${listing}`);
    const late = modes.filter((m) => m.startsWith('late'));
    assert.ok(late.length >= 4, `the stall is seen for most of its 5 periods\n${listing}`);
    for (const m of late) assert.match(m, /late: the planner is still working on the plan asked for \d+ ms ago \(budget 80\.0 ms\); following the previous plan/);
    assert.ok(modes.slice(-5).every((m) => m.startsWith('ok')), `control resumes when the planner returns\n${listing}`);
    assert.equal(errors, 0);
  });

  it('the same block with the planner on the main thread holds the commands back (why the planner has a thread)', async () => {
    const { lateness, listing } = await stalledRun('main');
    assert.ok(Math.max(...lateness) > 300, `the blocked thread delays the commands\n${listing}`);
  });
});

describe('embedded simulation in the loop (acrobot swing-up, 40 Hz, lockstep)', () => {
  const ACROBOT = fileURLToPath(new URL('../../launch/config/acrobot.yaml', import.meta.url));
  for (const planner of ['mppi', 'tsmc'] as const) {
    it(`${planner} swings up with the launch file's parameters and balances to the end`, async () => {
      const params = resolveRunParams('acrobot', { ...readParamsFile(ACROBOT), planner });
      const { session, sim } = await assemble(params, { lockstep: true });
      const { summary } = await runLoop(sim, session, { durationS: 5, lockstep: true });
      session.dispose();
      assert.ok(summary.success, JSON.stringify(summary));
      assert.ok(summary.heldFraction! > 0.95, `in the goal ${summary.heldFraction} of the time after reaching it`);
    });
  }
});

describe('embedded simulation in the loop (cart double pendulum swing-up, 50 Hz, lockstep)', () => {
  const CART = fileURLToPath(new URL('../../launch/config/cart-double-pendulum.yaml', import.meta.url));
  it('mppi swings it up with the launch file\'s parameters and balances to the end', async () => {
    const params = resolveRunParams('cart-double-pendulum', readParamsFile(CART));
    const { session, sim } = await assemble(params, { lockstep: true });
    const { summary } = await runLoop(sim, session, { durationS: 8, lockstep: true });
    session.dispose();
    assert.ok(summary.success, JSON.stringify(summary));
    assert.ok(summary.heldFraction! > 0.95, `in the goal ${summary.heldFraction} of the time after reaching it`);
  });
});

describe('run command', () => {
  it('writes an MCAP log that reads back message for message, a summary and a plot', () => {
    const out = mkdtempSync(join(tmpdir(), 'tmpc-run-'));
    const r = spawnSync(process.execPath, [CLI, 'run', '--system', 'pendulum', '--planner', 'mppi', '--params', CONFIG,
      '--duration', '1', '--lockstep', '--x0', '0,0', '--set', 'mppi.samples=128', '--out', out, '--json'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const result = JSON.parse(r.stdout);
    assert.equal(result.ticks, 10);
    assert.equal(result.out, out);
    const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
    assert.equal(summary.ticks, 10);
    assert.match(readFileSync(join(out, 'run.svg'), 'utf8'), /<svg[^>]*>/);

    const reader = new McapStreamReader();
    reader.append(readFileSync(join(out, 'run.mcap')));
    const channels = new Map<number, { topic: string; schemaId: number; encoding: string }>();
    const schemas = new Map<number, { name: string; encoding: string; decode: (b: Uint8Array) => unknown }>();
    const messages = new Map<string, unknown[]>();
    for (let rec = reader.nextRecord(); rec; rec = reader.nextRecord()) {
      if (rec.type === 'Schema') {
        // decoded from the file's own FileDescriptorSet, as Foxglove does: nothing of ours in the path
        const type = (protobuf.Root as unknown as { fromDescriptor(d: unknown): protobuf.Root }).fromDescriptor(descriptor.FileDescriptorSet.decode(rec.data)).lookupType(rec.name);
        schemas.set(rec.id, { name: rec.name, encoding: rec.encoding, decode: (b) => type.toObject(type.decode(b), { defaults: true, arrays: true }) });
      }
      if (rec.type === 'Channel') channels.set(rec.id, { topic: rec.topic, schemaId: rec.schemaId, encoding: rec.messageEncoding });
      if (rec.type === 'Message') {
        const channel = channels.get(rec.channelId)!;
        assert.equal(channel.encoding, 'protobuf', 'protobuf by default');
        messages.set(channel.topic, [...(messages.get(channel.topic) ?? []), schemas.get(channel.schemaId)!.decode(rec.data)]);
      }
    }
    assert.ok(reader.done(), 'the file ends with a valid footer');
    // the topics and types a launched ROS graph has, so a bag of the nodes and this log read alike
    assert.deepEqual([...schemas.values()].map((s) => `${s.encoding} ${s.name}`).sort(), [
      'protobuf sensor_msgs.msg.JointState', 'protobuf std_msgs.msg.Float64MultiArray', 'protobuf tempered_mpc_msgs.msg.Plan', 'protobuf tempered_mpc_msgs.msg.PlannerStatus']);
    for (const topic of ['/tempered_mpc/state', '/tempered_mpc/true_state', '/tempered_mpc/command', '/tempered_mpc/plan', '/tempered_mpc/status']) {
      assert.equal(messages.get(topic)?.length, 10, topic);
    }
    const state = messages.get('/tempered_mpc/true_state')![0] as { name: string[]; position: number[]; velocity: number[]; header: { stamp: { sec: number } } };
    assert.deepEqual(state.name, ['theta']);
    assert.deepEqual([...state.position, ...state.velocity], [0, 0]);
    const plan = messages.get('/tempered_mpc/plan')![3] as { controls: number[]; states: number[]; times: number[]; state_names: string[] };
    const horizon = summary.params.model.horizon;
    assert.equal(plan.controls.length, horizon, 'one control per planned step');
    assert.equal(plan.times.length, horizon + 1);
    assert.equal(plan.states.length, 2 * (horizon + 1), 'predicted physical states from the planned-from state');
    assert.deepEqual(plan.state_names, ['theta', 'omega']);
    const status = messages.get('/tempered_mpc/status')!.at(-1) as { mode_name: string; mode: number; ticks: number; info_names: string[]; info_values: number[] };
    assert.equal(status.mode_name, 'ok');
    assert.equal(status.mode, 0);
    assert.equal(status.ticks, 10);
    const rollouts = status.info_values[status.info_names.indexOf('rollouts')];
    assert.ok(rollouts >= 128, `MPPI reports its rollouts per tick (${rollouts})`);
    // every published command is the first row of the plan published with it
    const commands = messages.get('/tempered_mpc/command')! as { data: number[] }[];
    const plans = messages.get('/tempered_mpc/plan')! as { controls: number[] }[];
    commands.forEach((c, i) => assert.equal(c.data[0], plans[i].controls[0]));
  });

  it('rejects a malformed parameter file and unknown parameters with one clear line', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tmpc-yaml-'));
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'tempered_mpc_controller:\n  ros__parameters:\n    planner: [tsmc\n');
    const cases: [string[], RegExp][] = [
      [['--params', bad], /malformed YAML/],
      [['--params', join(dir, 'missing.yaml')], /cannot read \(ENOENT\)/],
      [['--set', 'tsmc.lamda=0.1'], /unknown tsmc parameter 'lamda'/],
      [['--set', 'tsmc.lambda=-1'], /tsmc.lambda must be > 0/],
      [['--set', 'tsmc.rho=1'], /tsmc.rho must be < 1/],
      [['--set', 'tsmc.particles=1'], /tsmc.particles must be >= 2/],
      [['--set', 'foo.bar=1'], /unknown parameter group in 'foo.bar'/],
      [['--planner', 'ilqr'], /controller.planner must be one of tsmc, mppi/],
      [['--x0', '0'], /--x0 needs 2 comma-separated numbers/],
      // absurd values: refused with the key the user set, never a crash (once: a V8 out-of-memory, "Invalid typed array length")
      [['--set', 'threads=2147483648'], /controller\.threads must be <= 256, got 2147483648/],
      [['--set', 'tsmc.particles=2147483648'], /tsmc\.particles must be <= 65536/],
      [['--set', 'sim.massScale=1e-12'], /sim\.massScale must be >= 0\.01/],
      [['--set', 'sim.substeps=10000', '--rate', '1000'], /sim\.substeps 10000 at a 0\.001 s period gives a plant step of 1\.00e-7 s/],
      [['--set', 'model.horizon=100000'], /model\.horizon must be <= 10000/],
      [['--set', 'sim.x0=1,2,3'], /sim\.x0 must be 2 finite numbers for pendulum \(theta, omega\)/],
    ];
    for (const [args, message] of cases) {
      const r = spawnSync(process.execPath, [CLI, 'run', '--system', 'pendulum', '--duration', '0.1', '--lockstep', ...args], { encoding: 'utf8' });
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stdout}`);
      const lines = r.stderr.split('\n').filter((l) => l && !l.startsWith('Warning'));
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0], message);
    }
  });
});
