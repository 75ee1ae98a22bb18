import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { MessageReader, MessageWriter } from '@foxglove/rosmsg2-serialization';
import { ControllerNode } from '../ros/src/controller-node.js';
import { nodeKeyMatches } from '../ros/src/overrides.js';
import { PARAMETER } from '../ros/src/rcl.js';
import { SimulatorNode } from '../ros/src/simulator-node.js';
import { definitionsOf, TYPES } from '../src/interfaces/definitions.js';
import type { StatusMsg } from '../src/interfaces/messages.js';
import { MODELS } from '../src/models/index.js';
import type { ParamEntry } from '../src/params.js';
import { VALUE_PARAMS } from '../src/prior/value-iteration.js';
import { readParamsFile } from '../src/run/params-file.js';
import { controllerParameterTable, resolveRunParams } from '../src/run/setup.js';
import { simulatorParameterTable } from '../sim/simulator.js';
import { createStandIn, parameterFromYaml, StandIn } from './support/rclnodejs-standin.js';
import { collect, parameterFileRules, until } from './support/ros-bus.js';

/*
 * The ROS door's ways in and out, through the STAND-IN for rclnodejs
 * (test/support/rclnodejs-standin.ts): the safe command on every path out
 * of active, parameter files keyed as ROS 2 keys them (a `ros2 param dump`
 * loads back), read-only binding at configure, /parameter_events, the
 * lifecycle services `ros2 lifecycle list` reads. The same paths on a real
 * Jazzy are in docs/results.md ("The ROS door on a real Jazzy").
 */

const FQN = '/tempered_mpc/tempered_mpc_controller';
const FAST = { planner: 'mppi', 'mppi.samples': 64n, 'mppi.iterations': 2n, threads: 1n };

const made: ControllerNode[] = [];
function controller(s: StandIn, namespace = 'tempered_mpc'): ControllerNode {
  const c = new ControllerNode(s.rcl, { namespace, parameterRules: s.parameterRules() });
  made.push(c);
  return c;
}
afterEach(async () => {
  for (const c of made.splice(0)) {
    if (c.lifecycleState !== 'finalized') await c.transition('shutdown');
    c.node.destroy();
  }
});

/** A pendulum state message stamped now on the node's clock, the pendulum hanging a little off. */
function state(c: ControllerNode) {
  const t = Number(c.node.now().nanoseconds) * 1e-9;
  return { header: { stamp: { sec: Math.floor(t), nanosec: Math.round((t % 1) * 1e9) }, frame_id: '' }, name: ['theta'], position: [0.3], velocity: [0], effort: [] };
}

/** Active, fed states, and commanding something other than zero. */
async function controlling(s: StandIn, c: ControllerNode, commands: { data: number[] }[]): Promise<void> {
  assert.equal(await c.transition('configure'), true);
  assert.equal(await c.transition('activate'), true);
  const feed = setInterval(() => s.bus.publish('/tempered_mpc/state', TYPES.jointState, state(c)), 20);
  try {
    await until('a non-zero command', () => commands.some((m) => m.data[0] !== 0));
  } finally {
    clearInterval(feed);
  }
}

describe('ROS door (stand-in for rclnodejs): the safe command on every way out of active', () => {
  for (const way of ['shutdown', 'stop'] as const) {
    it(`${way === 'shutdown' ? 'a shutdown transition from active' : 'stop(), the path of SIGINT, SIGTERM and launch\'s Ctrl-C'}: the last command is the safe one, and the node ends finalized`, async () => {
      const s = createStandIn({ overrides: { tempered_mpc_controller: FAST } });
      const commands = collect<{ data: number[] }>(s, '/tempered_mpc/command', TYPES.command);
      const statuses = collect<StatusMsg>(s, '/tempered_mpc/status', TYPES.status);
      const c = controller(s);
      await controlling(s, c, commands);
      if (way === 'shutdown') assert.equal(await c.transition('shutdown'), true);
      else await c.stop('SIGINT received');
      assert.equal(c.lifecycleState, 'finalized');
      await sleep(300);
      assert.deepEqual(Array.from(commands.at(-1)!.data), [0], 'the safe command is the last word');
      assert.equal(c.owesSafeCommand, false);
      assert.equal(statuses.at(-1)!.reason, way === 'shutdown' ? 'shut down' : 'SIGINT received');
    });
  }

  it('stop() while a tick is planning: the tick publishes nothing after the safe command', async () => {
    const s = createStandIn({ overrides: { tempered_mpc_controller: FAST } });
    const commands = collect<{ data: number[] }>(s, '/tempered_mpc/command', TYPES.command);
    const c = controller(s);
    await controlling(s, c, commands);
    // every tick from now on takes 200 ms more than its plan: stop() lands inside one
    const session = c.current!;
    const tick = session.tick.bind(session);
    let ticking = false;
    session.tick = async (atS) => {
      ticking = true;
      const result = await tick(atS);
      await sleep(200);
      return result;
    };
    await until('a slow tick in flight', () => ticking);
    await c.stop('SIGTERM received');
    await sleep(400);
    assert.deepEqual(Array.from(commands.at(-1)!.data), [0]);
  });

  it('error processing: a deactivate that fails before its safe command goes out ends in unconfigured with the safe command published', async () => {
    const s = createStandIn({ overrides: { tempered_mpc_controller: FAST } });
    const commands = collect<{ data: number[] }>(s, '/tempered_mpc/command', TYPES.command);
    const c = controller(s);
    await controlling(s, c, commands);
    const session = c.current!;
    const commandMessage = session.commandMessage.bind(session);
    let failures = 1;
    session.commandMessage = (tick) => {
      if (tick.reason === 'deactivated' && failures-- > 0) throw new Error('stand-in failure while deactivating');
      return commandMessage(tick);
    };
    // (rclnodejs reports the error processing's result, SUCCESS, as the transition's)
    await c.transition('deactivate');
    assert.equal(c.lifecycleState, 'unconfigured', 'error processing, then unconfigured');
    await sleep(300);
    assert.deepEqual(Array.from(commands.at(-1)!.data), [0], 'error processing published it');
  });

  it('a node never activated publishes nothing on its way out (no command to take back)', async () => {
    const s = createStandIn({ overrides: { tempered_mpc_controller: FAST } });
    const commands = collect<{ data: number[] }>(s, '/tempered_mpc/command', TYPES.command);
    const c = controller(s);
    assert.equal(await c.transition('configure'), true);
    await c.stop('SIGINT received');
    await sleep(100);
    assert.equal(commands.length, 0);
  });
});

/** What `ros2 param dump` writes for a node: its fully qualified name, the dotted names nested, doubles with a decimal point. */
function paramDump(fqn: string, c: { node: { getParameters(): { name: string; type: number; value: unknown }[] } }): string {
  const tree: Record<string, unknown> = {};
  for (const p of c.node.getParameters()) {
    const parts = p.name.split('.');
    let at = tree;
    for (const part of parts.slice(0, -1)) at = (at[part] ??= {}) as Record<string, unknown>;
    at[parts.at(-1)!] = p;
  }
  const scalar = (type: number, v: unknown): string =>
    type === PARAMETER.DOUBLE ? (Number.isInteger(v) ? `${String(v)}.0` : String(v)) : type === PARAMETER.STRING ? `'${String(v)}'` : String(v);
  const lines = [`${fqn}:`, '  ros__parameters:'];
  const write = (node: Record<string, unknown>, indent: string) => {
    for (const key of Object.keys(node).sort()) {
      const v = node[key] as { type?: number; value?: unknown };
      if (v.type === undefined) {
        lines.push(`${indent}${key}:`);
        write(v as Record<string, unknown>, `${indent}  `);
      } else if (Array.isArray(v.value)) {
        lines.push(`${indent}${key}:`, ...v.value.map((x) => `${indent}- ${scalar(v.type === PARAMETER.DOUBLE_ARRAY ? PARAMETER.DOUBLE : PARAMETER.STRING, x)}`));
      } else lines.push(`${indent}${key}: ${scalar(v.type!, v.value)}`);
    }
  };
  write(tree, '    ');
  return `${lines.join('\n')}\n`;
}

describe('ROS door (stand-in for rclnodejs): parameter files as ROS 2 keys them', () => {
  it('matches node keys as rclcpp does: the fully qualified name, /* and /**; a bare name in any namespace', () => {
    const cases: [string, string, boolean][] = [
      ['/**', '/tempered_mpc', true], ['/**', '/', true], [FQN, '/tempered_mpc', true], [FQN, '/', false], [FQN, '/other', false],
      ['tempered_mpc/tempered_mpc_controller', '/tempered_mpc', true], ['/*/tempered_mpc_controller', '/tempered_mpc', true],
      ['/*/tempered_mpc_controller', '/a/b', false], ['/**/tempered_mpc_controller', '/a/b', true], ['/**/tempered_mpc_controller', '/', true],
      ['/*', '/', true], ['/*', '/tempered_mpc', false], ['tempered_mpc_controller', '/anywhere', true], ['tempered_mpc_simulator', '/tempered_mpc', false],
      ['/tempered_mpc_controller', '/tempered_mpc', false],
    ];
    for (const [key, ns, expected] of cases) assert.equal(nodeKeyMatches(key, ns, 'tempered_mpc_controller'), expected, `${key} for ${ns}`);
  });

  it('applies a key by fully qualified name that rclnodejs alone ignores, the later key winning', () => {
    const s = createStandIn({
      rules: [
        { name: '/**', parameters: { 'tsmc.particles': 96n, 'model.horizon': 15n } },
        { name: FQN, parameters: { 'tsmc.particles': 128n, budgetMs: 60.0 } },
        { name: '/other_ns/tempered_mpc_controller', parameters: { 'tsmc.particles': 7n } },
      ],
    });
    const c = controller(s);
    assert.equal(c.node.getParameter('tsmc.particles').value, 128n, 'the fully qualified key, later than /**');
    assert.equal(c.node.getParameter('budgetMs').value, 60);
    assert.equal(c.node.getParameter('model.horizon').value, 15n, 'the wildcard');
  });

  it('warns once for a misspelt parameter in a key naming this node, with the nearest name', () => {
    const s = createStandIn({ rules: [{ name: FQN, parameters: { 'tsmc.particle': 10n } }, { name: '/**', parameters: { substeps: 10n } }] });
    controller(s);
    const warnings = s.logs.filter((l) => l.level === 'warn').map((l) => l.text);
    assert.deepEqual(warnings, ["parameter overrides: unknown parameter 'tsmc.particle' (did you mean 'tsmc.particles'?); ignored"], 'a wildcard\'s parameters may be another node\'s');
  });

  it('a `ros2 param dump` loads back: as the parameter file of a new node (every value the same) and of `tempered-mpc run --params`', async () => {
    const s = createStandIn({ overrides: { tempered_mpc_controller: { ...FAST, 'tsmc.particles': 128n, budgetMs: 60.0, 'prior.value': false } } });
    const first = controller(s);
    const dump = paramDump(FQN, first);
    assert.match(dump, /^\/tempered_mpc\/tempered_mpc_controller:\n {2}ros__parameters:\n/);
    assert.match(dump, /\n {4}use_sim_time: false\n/, 'a dump holds the node\'s own ROS parameters too');

    const again = controller(createStandIn({ rules: parameterFileRules(dump) }));
    const values = (c: ControllerNode) => Object.fromEntries(c.node.getParameters().map((p) => [p.name, p.value]));
    assert.deepEqual(values(again), values(first));
    assert.equal(again.node.getParameter('prior.value').value, false);
    assert.equal(again.node.getParameter('prior.value').type, PARAMETER.BOOL);

    // `ros2 param load` of the dump into the running node: every set passes, read-only ones included (they hold the dumped values)
    assert.equal(await first.transition('configure'), true);
    const loaded = first.node.setParameters(parameterFileRules(dump).flatMap((r) => Object.entries(r.parameters)).map(([name, value]) => parameterFromYaml(name, value) as never));
    assert.deepEqual(loaded.filter((r) => !r.successful), []);

    const folder = mkdtempSync(join(tmpdir(), 'tmpc-dump-'));
    writeFileSync(join(folder, 'dump.yaml'), dump);
    const embedded = readParamsFile(join(folder, 'dump.yaml'));
    assert.equal(embedded['tsmc.particles'], 128);
    assert.equal(embedded['prior.value'], false);
    assert.equal('use_sim_time' in embedded, false, 'the ROS node\'s own parameters are not the run\'s');
    assert.equal(resolveRunParams('pendulum', embedded).controller.budgetMs, 60);
  });

  it('every switch is a boolean and no enumeration has a choice rcl reads as a boolean (on, off, yes, no, y, n, true, false)', () => {
    // rcl_yaml_param_parser's words (parse.c), in every case it accepts
    const rclBooleans = new Set(['y', 'yes', 'true', 'on', 'n', 'no', 'false', 'off']);
    const entries: ParamEntry[] = [];
    for (const system of MODELS.keys()) {
      for (const planner of ['tsmc', 'mppi']) entries.push(...controllerParameterTable(resolveRunParams(system, { planner })).entries);
      entries.push(...simulatorParameterTable(system).entries);
    }
    entries.push(...Object.entries(VALUE_PARAMS).map(([key, def]) => ({ key, def })));
    const offenders = entries.filter((e) => e.def.kind === 'enum' && e.def.choices.some((choice) => rclBooleans.has(choice.toLowerCase())));
    assert.deepEqual(offenders.map((e) => e.key), []);
    assert.equal(entries.find((e) => e.key === 'prior.value')!.def.kind, 'flag');
  });
});

describe('ROS door (stand-in for rclnodejs): parameters of a running node', () => {
  it('read-only binds at configure: a bad value from the file is set right while unconfigured, refused once configured, and its own value passes', async () => {
    const s = createStandIn({ overrides: { tempered_mpc_controller: { ...FAST, 'model.horizon': 0n } } });
    const c = controller(s);
    assert.equal(await c.transition('configure'), false);
    assert.match(s.logs.filter((l) => l.level === 'error').map((l) => l.text).join('\n'), /model\.horizon/);
    const { Parameter } = s.rcl;
    assert.equal(c.node.setParameters([new Parameter('model.horizon', PARAMETER.INTEGER, 20)])[0].successful, true, 'settable while unconfigured');
    assert.equal(await c.transition('configure'), true);
    const refused = c.node.setParameters([new Parameter('model.horizon', PARAMETER.INTEGER, 25)])[0];
    assert.equal(refused.successful, false);
    assert.match(refused.reason, /^model\.horizon is read-only \(.*\): cleanup, set it, then configure again$/);
    const descriptor = c.node.getParameterDescriptor('model.horizon').toMessage() as { read_only: boolean };
    assert.equal(descriptor.read_only, true, 'ros2 param describe says read-only once it binds');
    assert.equal(await c.transition('cleanup'), true);
    assert.equal(c.node.setParameters([new Parameter('model.horizon', PARAMETER.INTEGER, 25)])[0].successful, true, 'and free again after cleanup');
  });

  it('publishes parameter events on the global /parameter_events, naming the node by its fully qualified name', async () => {
    const s = createStandIn({ overrides: { tempered_mpc_controller: FAST, tempered_mpc_simulator: { system: 'pendulum' } } });
    const events = collect<{ node: string; changed_parameters: { name: string; value: { double_value: number } }[] }>(s, '/parameter_events', 'rcl_interfaces/msg/ParameterEvent');
    const c = controller(s);
    const sim = new SimulatorNode(s.rcl, { namespace: 'tempered_mpc', parameterRules: s.parameterRules() });
    const { Parameter } = s.rcl;
    assert.equal(c.node.setParameters([new Parameter('mppi.temperature', PARAMETER.DOUBLE, 0.2)])[0].successful, true);
    assert.equal(sim.node.setParameters([new Parameter('processNoise', PARAMETER.DOUBLE, 0.05)])[0].successful, true);
    await until('two change events', () => events.filter((e) => e.changed_parameters.length > 0).length >= 2);
    const changes = events.filter((e) => e.changed_parameters.length > 0).map((e) => [e.node, e.changed_parameters[0].name, e.changed_parameters[0].value.double_value]);
    assert.deepEqual(changes, [[FQN, 'mppi.temperature', 0.2], ['/tempered_mpc/tempered_mpc_simulator', 'processNoise', 0.05]]);
    assert.equal(s.bus.count('/tempered_mpc/parameter_events', 'rcl_interfaces/msg/ParameterEvent'), 0);
    sim.node.destroy();
  });

  it('a set of more parameters than any table has is refused whole, unread, in one reason', () => {
    const s = createStandIn({ overrides: { tempered_mpc_controller: FAST } });
    const c = controller(s);
    const { Parameter } = s.rcl;
    const many = Array.from({ length: 5000 }, (_, i) => new Parameter(`no.such.parameter.${i}`, PARAMETER.DOUBLE, 1));
    const started = performance.now();
    const results = c.node.setParameters(many);
    const atomic = c.node.setParametersAtomically(many);
    assert.ok(performance.now() - started < 200, 'no name was looked up');
    assert.equal(results.length, 5000);
    assert.ok(results.every((r) => !r.successful && r.reason === '5000 parameters in one request; at most 128'));
    assert.equal(atomic.reason, '5000 parameters in one request; at most 128');
  });

  it('a type refusal shows a double as ROS writes it (512.0), and the default budget is 80 ms to the microsecond', async () => {
    const s = createStandIn({ overrides: { tempered_mpc_controller: FAST } });
    const c = controller(s);
    const { Parameter } = s.rcl;
    assert.match(c.node.setParameters([new Parameter('mppi.samples', PARAMETER.DOUBLE, 512)])[0].reason, /mppi\.samples takes an integer, got a double \(512\.0\)/);
    assert.equal(await c.transition('configure'), true);
    assert.equal(c.current!.budgetMs, 80);
  });

  it('a stale status names why the states that came were refused', async () => {
    const s = createStandIn({ overrides: { tempered_mpc_controller: FAST } });
    const statuses = collect<StatusMsg>(s, '/tempered_mpc/status', TYPES.status);
    const c = controller(s);
    assert.equal(await c.transition('configure'), true);
    assert.equal(await c.transition('activate'), true);
    s.bus.publish('/tempered_mpc/state', TYPES.jointState, { ...state(c), name: ['shoulder'] });
    await until('a waiting status with the refusal', () => statuses.some((m) => /refused since the last good one/.test(m.reason)));
    assert.match(statuses.at(-1)!.reason, /^no state received yet; 1 state refused since the last good one, the latest: state: joint names \[shoulder\]/);
  });
});

describe('ROS door (stand-in for rclnodejs): what `ros2 lifecycle list` reads', () => {
  it('answers GetAvailableTransitions with the message\'s own fields, and serves the whole transition graph', async () => {
    const s = createStandIn({ overrides: { tempered_mpc_controller: FAST } });
    const c = controller(s);
    const writer = new MessageWriter(definitionsOf('lifecycle_msgs/msg/TransitionDescription'));
    const reader = new MessageReader(definitionsOf('lifecycle_msgs/msg/TransitionDescription'));
    type Description = { transition: { id: number; label: string }; start_state: { label: string }; goal_state: { label: string } };
    const onWire = (list: unknown) => (list as object[]).map((d) => reader.readMessage<Description>(writer.writeMessage(d)));
    const line = (d: Description) => `${d.transition.label} [${d.transition.id}]: ${d.start_state.label} -> ${d.goal_state.label}`;

    const available = onWire((await s.callService(`${FQN}/get_available_transitions`)).available_transitions);
    assert.deepEqual(available.map(line), ['configure [1]: unconfigured -> configuring', 'shutdown [5]: unconfigured -> shuttingdown']);
    // a ChangeState request by id alone, as launch_ros sends it
    const byId = new Promise<boolean>((resolve) => {
      const machine = c.node as unknown as { _onChangeState(request: object, response: object): unknown };
      void machine._onChangeState({ transition: { id: 1, label: '' } }, { template: { success: false }, send: (r: { success: boolean }) => resolve(r.success) });
    });
    assert.equal(await byId, true);
    assert.equal(c.lifecycleState, 'inactive');
    const inactive = onWire((await s.callService(`${FQN}/get_available_transitions`)).available_transitions);
    assert.deepEqual(inactive.map((d) => d.transition.label), ['cleanup', 'activate', 'shutdown']);

    const graph = onWire((await s.callService(`${FQN}/get_transition_graph`)).available_transitions);
    assert.equal(graph.length, 25, 'rcl_lifecycle\'s default state machine');
    assert.ok(graph.every((d) => d.transition.label && d.start_state.label && d.goal_state.label), 'every label filled');
    assert.ok(graph.map(line).includes('transition_success [10]: configuring -> inactive'));
  });
});
