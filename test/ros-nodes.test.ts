import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { MessageReader, MessageWriter } from '@foxglove/rosmsg2-serialization';
import { ControllerNode } from '../ros/src/controller-node.js';
import { SimulatorNode } from '../ros/src/simulator-node.js';
import { PARAMETER } from '../ros/src/rcl.js';
import { definitionsOf, TYPES } from '../src/interfaces/definitions.js';
import type { StatusMsg } from '../src/interfaces/messages.js';
import { runLoop } from '../src/run/loop.js';
import { readParamsFile } from '../src/run/params-file.js';
import { assemble, resolveRunParams } from '../src/run/setup.js';
import { createStandIn, StandIn, StandInLifecycle } from './support/rclnodejs-standin.js';
import { collect, parameterFileRules, until } from './support/ros-bus.js';

/*
 * The ROS nodes' own code, driven through an in-process STAND-IN for
 * rclnodejs (test/support/rclnodejs-standin.ts): lifecycle transitions,
 * parameters, topics as CDR bytes. The real library runs in
 * ros-integration.test.ts when a ROS 2 installation is sourced.
 */

const PENDULUM_YAML = fileURLToPath(new URL('../../launch/config/pendulum.yaml', import.meta.url));

/** A ROS 2 parameter file as the nodes get it, by node key: keys joined with '.', integers typed as integers. */
function overridesFrom(path: string): Record<string, Record<string, unknown>> {
  return Object.fromEntries(parameterFileRules(readFileSync(path, 'utf8')).map((r) => [r.name, r.parameters]));
}

function pendulumStandIn(controller: Record<string, unknown> = {}, simulator: Record<string, unknown> = {}): StandIn {
  const base = overridesFrom(PENDULUM_YAML);
  return createStandIn({
    overrides: {
      tempered_mpc_controller: { ...base.tempered_mpc_controller, planner: 'mppi', 'mppi.samples': 64n, 'mppi.iterations': 2n, threads: 1n, ...controller },
      tempered_mpc_simulator: { ...base.tempered_mpc_simulator, system: 'pendulum', ...simulator },
    },
  });
}

const lifecycle = (c: ControllerNode) => c.node as unknown as StandInLifecycle;

/** Nodes made by a test, released after it even when it fails (a live timer would keep mocha running). */
const made: (ControllerNode | SimulatorNode)[] = [];
function track<T extends ControllerNode | SimulatorNode>(n: T): T {
  made.push(n);
  return n;
}
afterEach(async () => {
  for (const n of made.splice(0)) {
    if (n instanceof ControllerNode) await n.transition('shutdown');
    else n.stop();
    n.node.destroy();
  }
});

describe('ROS controller node (stand-in for rclnodejs): lifecycle', () => {
  it('goes through configure, activate, deactivate, cleanup and shutdown; an impossible transition is refused, not thrown', async () => {
    const s = pendulumStandIn();
    const commands = collect<{ data: number[] }>(s, '/command', TYPES.command);
    const statuses = collect<StatusMsg>(s, '/status', TYPES.status);
    const c = track(new ControllerNode(s.rcl, { parameterRules: s.parameterRules() }));
    assert.equal(c.lifecycleState, 'unconfigured');
    assert.equal(await lifecycle(c).requestTransition('activate'), false);
    assert.equal(c.lifecycleState, 'unconfigured');
    assert.ok(s.logs.some((l) => l.level === 'warn' && /^activate: not possible from unconfigured \(possible: configure, shutdown\)$/.test(l.text)), 'the refusal is logged in one line');
    assert.ok(!s.logs.some((l) => l.level === 'error'), 'a transition that is merely not possible now is no error');

    assert.equal(await lifecycle(c).requestTransition('configure'), true);
    assert.equal(c.lifecycleState, 'inactive');
    assert.equal(await lifecycle(c).requestTransition('activate'), true);
    assert.equal(c.lifecycleState, 'active');
    // no state yet: the timer ticks with the safe command and says why
    // activation waits up to 2 s for a first state: meanwhile the inactive node's status says so, once a second
    assert.ok(statuses.some((m) => m.mode_name === 'waiting' && m.reason === 'inactive: activate to control'), 'a status while inactive');
    const ticking = () => statuses.filter((m) => m.reason !== 'inactive: activate to control');
    await until('two status messages', () => ticking().length >= 2);
    assert.equal(ticking()[0].mode_name, 'waiting');
    assert.equal(ticking()[0].reason, 'no state received yet');
    assert.deepEqual(Array.from(commands[0].data), [0]);

    const before = commands.length;
    assert.equal(await lifecycle(c).requestTransition('deactivate'), true);
    assert.equal(c.lifecycleState, 'inactive');
    await sleep(300);
    assert.equal(commands.length, before + 1, 'deactivate publishes the safe command once, then nothing');
    assert.deepEqual(Array.from(commands.at(-1)!.data), [0]);

    assert.equal(await lifecycle(c).requestTransition('cleanup'), true);
    assert.equal(c.lifecycleState, 'unconfigured');
    assert.equal(c.current, undefined, 'cleanup releases the session and its kernels');
    assert.ok(s.logs.some((l) => l.level === 'info' && /^cleaned up: released/.test(l.text)), 'cleanup is logged');
    assert.equal(await lifecycle(c).requestTransition('shutdown'), true);
    assert.equal(c.lifecycleState, 'finalized');
  });

  it('fails configure with the reason when a parameter file value is bad, and configures once it is fixed', async () => {
    const s = pendulumStandIn({ 'mppi.samples': 1n, budgetMs: 20n });
    const c = track(new ControllerNode(s.rcl, { parameterRules: s.parameterRules() }));
    assert.equal(await c.transition('configure'), false);
    assert.equal(c.lifecycleState, 'unconfigured');
    const reason = s.logs.filter((l) => l.level === 'error').map((l) => l.text).join('\n');
    assert.match(reason, /configure failed: .*mppi\.samples must be >= 2, got 1/);
    assert.match(reason, /budgetMs takes a double, got an integer \(20\) \(write 20\.0\)/);
    // the bad override was replaced by its default at declaration; set a good value and configure again
    const { Parameter } = s.rcl;
    const set = c.node.setParameters([new Parameter('mppi.samples', PARAMETER.INTEGER, 32), new Parameter('budgetMs', PARAMETER.DOUBLE, 20)]);
    assert.deepEqual(set.map((r) => r.successful), [true, true]);
    assert.equal(await c.transition('configure'), true);
    assert.equal(c.current!.budgetMs, 20);
    await c.transition('shutdown');
  });
});

describe('ROS controller node (stand-in for rclnodejs): parameters from the schema', () => {
  it('declares every parameter with a descriptor that goes on the wire as rcl_interfaces/ParameterDescriptor: description, range, read-only', () => {
    const s = pendulumStandIn();
    const c = track(new ControllerNode(s.rcl, { parameterRules: s.parameterRules() }));
    const writer = new MessageWriter(definitionsOf('rcl_interfaces/msg/ParameterDescriptor'));
    const reader = new MessageReader(definitionsOf('rcl_interfaces/msg/ParameterDescriptor'));
    type Wire = { name: string; type: number; description: string; additional_constraints: string; read_only: boolean;
      floating_point_range: { from_value: number; to_value: number; step: number }[]; integer_range: { from_value: bigint; to_value: bigint }[] };
    const describe = (key: string) => reader.readMessage<Wire>(writer.writeMessage(c.node.getParameterDescriptor(key).toMessage()));

    const lambda = describe('tsmc.lambda');
    assert.equal(lambda.type, PARAMETER.DOUBLE);
    assert.match(lambda.description, /temperature lambda/);
    assert.equal(lambda.floating_point_range[0].from_value, 0);
    assert.equal(lambda.floating_point_range[0].to_value, 1e12);
    assert.equal(lambda.floating_point_range[0].step, 0, 'a continuous range (step 0)');
    assert.equal(lambda.read_only, false);

    const particles = describe('tsmc.particles');
    assert.equal(particles.type, PARAMETER.INTEGER);
    assert.deepEqual([particles.integer_range[0].from_value, particles.integer_range[0].to_value], [2n, 65536n]);

    const horizon = describe('model.horizon');
    assert.equal(horizon.read_only, false, 'read-only binds at configure: before it, a bad value can be set right');
    assert.match(horizon.additional_constraints, /read-only from configure on: model parameters are compiled into the rollout kernels/);
    const system = describe('system');
    assert.equal(system.type, PARAMETER.STRING);
    assert.match(system.description, /pendulum, acrobot, .*, or a model file \(a module \.js, \.mjs; a \.urdf\)/);
    assert.equal(describe('jointNames').type, PARAMETER.STRING_ARRAY);
    assert.deepEqual(c.node.getParameter('jointNames').value, ['theta'], 'the system\'s joint names by default');
    // the system's MPC defaults, with the parameter file's overrides
    assert.equal(c.node.getParameter('model.horizon').value, 20n);
    assert.equal(c.node.getParameter('rateHz').value, 10);
  });

  it('refuses out-of-range, wrong-type, read-only and unknown sets with their reasons, and a multi-parameter set with one bad value changes nothing', async () => {
    const s = pendulumStandIn();
    const c = track(new ControllerNode(s.rcl, { parameterRules: s.parameterRules() }));
    assert.equal(await c.transition('configure'), true);
    const { Parameter } = s.rcl;
    const reason = (r: { successful: boolean; reason: string }) => (r.successful ? 'accepted' : r.reason);
    const [range, type, readOnly, unknown] = c.node.setParameters([
      new Parameter('mppi.temperature', PARAMETER.DOUBLE, -1),
      new Parameter('mppi.temperature', PARAMETER.STRING, 'hot'),
      new Parameter('model.horizon', PARAMETER.INTEGER, 5),
      new Parameter('mppi.temprature', PARAMETER.DOUBLE, 1),
    ]).map(reason);
    assert.match(range, /mppi\.temperature must be > 0, got -1/);
    assert.match(type, /mppi\.temperature takes a double, got a string \(hot\)/);
    assert.match(readOnly, /^model\.horizon is read-only \(model parameters are compiled into the rollout kernels at configure\): cleanup, set it, then configure again$/);
    assert.equal(c.node.setParameters([new Parameter('model.horizon', PARAMETER.INTEGER, 20)])[0].successful, true, 'the value it holds passes: a dump loads back');
    assert.match(unknown, /unknown parameter 'mppi\.temprature' \(did you mean 'mppi\.temperature'\?\)/);

    const session = c.current!;
    const before = session.parameterValues();
    const atomic = c.node.setParametersAtomically([
      new Parameter('mppi.temperature', PARAMETER.DOUBLE, 0.05),
      new Parameter('mppi.sigmaMin', PARAMETER.DOUBLE, 3),
    ]);
    assert.equal(atomic.successful, false);
    assert.match(atomic.reason, /mppi\.sigmaMin 3 must not exceed mppi\.sigmaMax 0\.5/);
    assert.deepEqual(session.parameterValues(), before, 'nothing applied');
    assert.equal(c.node.getParameter('mppi.temperature').value, 0.01, 'nothing stored');

    const ok = c.node.setParametersAtomically([new Parameter('mppi.temperature', PARAMETER.DOUBLE, 0.05), new Parameter('mppi.samples', PARAMETER.INTEGER, 48)]);
    assert.equal(ok.successful, true, ok.reason);
    const planner = session.planner as unknown as { params: Record<string, unknown> };
    assert.equal(planner.params.samples, 64, 'a change waits for the tick boundary');
    await session.tick(0);
    assert.deepEqual([planner.params.temperature, planner.params.samples], [0.05, 48], 'applied together at the next tick');
    await c.transition('cleanup');
  });
});

describe('ROS controller node (stand-in for rclnodejs): telemetry server', () => {
  it('telemetryPort starts the server at configure; a PATCH goes through the node\'s parameter server; cleanup closes it', async () => {
    const port = 20000 + Math.floor(Math.random() * 20000);
    const s = pendulumStandIn({ telemetryPort: BigInt(port) });
    const c = track(new ControllerNode(s.rcl, { parameterRules: s.parameterRules() }));
    assert.equal(await c.transition('configure'), true);
    const base = `http://127.0.0.1:${port}`;
    const status = await (await fetch(`${base}/status`)).json() as { planner: string };
    assert.equal(status.planner, 'mppi');
    const bad = await fetch(`${base}/params`, { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ 'mppi.temperature': -1 }) });
    assert.equal(bad.status, 400);
    assert.equal(c.node.getParameter('mppi.temperature').value, 0.01);
    const ok = await fetch(`${base}/params`, { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ 'mppi.temperature': 0.04, 'mppi.samples': 32 }) });
    assert.equal(ok.status, 200, await ok.clone().text());
    assert.equal(c.node.getParameter('mppi.temperature').value, 0.04, 'ros2 param get sees what HTTP set');
    assert.equal(c.node.getParameter('mppi.samples').value, 32n, 'as a ROS integer');
    assert.equal(c.current!.parameterValues()['mppi.temperature'], 0.04);
    assert.equal(await c.transition('cleanup'), true);
    await assert.rejects(fetch(`${base}/healthz`), 'closed at cleanup');
  });
});

describe('ROS nodes (stand-in for rclnodejs): bad messages on the topics', () => {
  it('refuses wrong joint names, wrong lengths, NaN, stale stamps and a wrong-size goal with the reason in the status; every command stays finite', async () => {
    const s = pendulumStandIn();
    const statuses = collect<StatusMsg>(s, '/status', TYPES.status);
    const commands = collect<{ data: number[] }>(s, '/command', TYPES.command);
    const c = track(new ControllerNode(s.rcl, { parameterRules: s.parameterRules() }));
    assert.equal(await c.transition('configure'), true);
    assert.equal(await c.transition('activate'), true);
    const now = () => Number(c.node.now().nanoseconds) * 1e-9;
    const stamp = (t: number) => ({ sec: Math.floor(t), nanosec: Math.round((t % 1) * 1e9) });
    const joint = (over: Record<string, unknown>) => ({ header: { stamp: stamp(now()), frame_id: '' }, name: ['theta'], position: [0.1], velocity: [0], effort: [], ...over });
    // built when sent: the stamps are relative to the clock at that moment
    const cases: [() => unknown, RegExp][] = [
      [() => joint({ name: ['shoulder'] }), /joint names \[shoulder\] do not match the configured \[theta\]/],
      [() => joint({ position: [0.1, 0.2] }), /position has 2 values for 1 joint/],
      [() => joint({ velocity: [] }), /velocity has 0 values for 1 joint.*needs joint velocities/],
      [() => joint({ position: [NaN] }), /position of joint 'theta' is not a finite number \(NaN\)/],
      [() => joint({ velocity: [Infinity] }), /velocity of joint 'theta' is not a finite number \(Infinity\)/],
      [() => joint({ header: { stamp: stamp(now() + 5), frame_id: '' } }), /stamped (4\.9|5\.0)\d* s ahead of the controller's clock/],
      [() => joint({ header: { stamp: stamp(now() - 3), frame_id: '' } }), /stamped 3\.\d+ s ago, older than staleTimeoutS 0\.5 s/],
    ];
    for (const [msg, why] of cases) {
      const seen = statuses.length;
      s.bus.publish('/state', TYPES.jointState, msg());
      await until(`a status after ${why}`, () => statuses.length > seen + 1);
      assert.match(statuses.at(-1)!.last_rejection, why);
    }
    assert.equal(statuses.at(-1)!.rejected_states, cases.length);
    s.bus.publish('/goal', TYPES.jointState, { header: { stamp: stamp(now()), frame_id: '' }, name: ['theta', 'phi'], position: [3, 0], velocity: [0, 0], effort: [] });
    const seen = statuses.length;
    await until('a status after the goal', () => statuses.length > seen + 1);
    assert.equal(statuses.at(-1)!.rejected_goals, 1);
    assert.match(statuses.at(-1)!.last_rejection, /goal: joint names \[theta, phi\]/);
    // and a good state is taken: the controller plans
    s.bus.publish('/state', TYPES.jointState, joint({}));
    await until('a planned tick', () => statuses.some((st) => st.mode_name === 'ok'));
    for (const cmd of commands) assert.ok(cmd.data.every(Number.isFinite) && Math.abs(cmd.data[0]) <= 1);
    await c.transition('shutdown');
  });

  it('the simulator holds zero on a malformed command and says why', async () => {
    const s = pendulumStandIn({}, { stepping: 'realtime', stateRateHz: 50.0 });
    const sim = track(new SimulatorNode(s.rcl, { parameterRules: s.parameterRules() }));
    await sim.start();
    s.bus.publish('/command', TYPES.command, { layout: { dim: [], data_offset: 0 }, data: [0.5, 0.5] });
    s.bus.publish('/command', TYPES.command, { layout: { dim: [], data_offset: 0 }, data: [NaN] });
    await until('both commands', () => sim.rejectedCommands === 2);
    assert.match(sim.lastRejection, /data\[0\] is not a finite number \(NaN\)/);
    assert.ok(s.logs.some((l) => /command refused, holding zero: command: 2 values, pendulum takes 1 \(u\)/.test(l.text)));
    sim.stop();
  });
});

describe('ROS nodes (stand-in for rclnodejs): pendulum swing-up in lockstep through topics', () => {
  it('gives the same commands and trajectory as `tempered-mpc run --lockstep` with the same parameters and seeds', async () => {
    const ticks = 120;
    // embedded: the run command's path
    const params = resolveRunParams('pendulum', { ...readParamsFile(PENDULUM_YAML), planner: 'mppi', 'sim.x0': [0, 0] });
    const { session, sim } = await assemble(params, { lockstep: true });
    const embedded = await runLoop(sim, session, { durationS: ticks / session.rateHz, lockstep: true });
    session.dispose();
    assert.ok(embedded.summary.success, 'the embedded run swings up');

    // the two nodes, lockstep on simulated time, the launch file's parameters
    const s = createStandIn({
      overrides: {
        tempered_mpc_controller: { ...overridesFrom(PENDULUM_YAML).tempered_mpc_controller, planner: 'mppi', use_sim_time: true },
        tempered_mpc_simulator: { ...overridesFrom(PENDULUM_YAML).tempered_mpc_simulator, system: 'pendulum', stepping: 'lockstep', stateRateHz: 10.0, seed: 1n, x0: [0.0, 0.0] },
      },
    });
    const commands = collect<{ data: number[] }>(s, '/command', TYPES.command);
    const truth = collect<{ position: number[]; velocity: number[] }>(s, '/true_state', TYPES.jointState);
    const simNode = track(new SimulatorNode(s.rcl, { parameterRules: s.parameterRules() }));
    const loop = simNode.start();
    const c = track(new ControllerNode(s.rcl, { parameterRules: s.parameterRules() }));
    assert.equal(await lifecycle(c).requestTransition('configure'), true);
    assert.equal(await lifecycle(c).requestTransition('activate'), true);
    await until(`${ticks} commands`, () => commands.length >= ticks, 120000);
    simNode.stop();
    await loop;
    await c.transition('shutdown');

    for (let k = 0; k < ticks; k++) {
      assert.deepEqual(Array.from(commands[k].data), embedded.records[k].tick.control, `command at tick ${k}`);
      assert.deepEqual([...truth[k].position, ...truth[k].velocity], embedded.records[k].state, `true state at tick ${k}`);
    }
    assert.equal(s.bus.wire.get('/state')! >= ticks, true, 'every state crossed the wire as CDR');
  });
});
