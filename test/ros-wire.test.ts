import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MessageReader, MessageWriter } from '@foxglove/rosmsg2-serialization';
import { definitionsOf, ownDefinitions, parseMsgFile, TYPES } from '../src/interfaces/definitions.js';
import { logTopics, TICK_CHANNELS } from '../src/telemetry/channels.js';
import { decodeCommand, fromTime, StateCodec, toTime } from '../src/interfaces/messages.js';
import { ControllerSession } from '../src/run/session.js';
import { resolveRunParams } from '../src/run/setup.js';
import { model } from './helpers.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Through the wire and back: CDR as ROS 2 (rmw) puts it on the network, with the Jazzy definitions. */
function wire<T>(type: string, msg: unknown): T {
  const bytes = new MessageWriter(definitionsOf(type)).writeMessage(msg);
  return new MessageReader(definitionsOf(type)).readMessage<T>(bytes);
}

describe('interface package tempered_mpc_msgs', () => {
  it('every msgs/msg/*.msg parses as a ROS 2 message definition and has a CDR form', () => {
    const files = readdirSync(join(ROOT, 'msgs/msg')).filter((f) => f.endsWith('.msg'));
    assert.deepEqual(files.sort(), ['NamedSeries.msg', 'Plan.msg', 'PlannerStatus.msg', 'StateEstimate.msg']);
    for (const [name, def] of ownDefinitions()) {
      assert.ok(def.definitions.length >= 2, name);
      assert.ok(new MessageWriter(definitionsOf(name)).calculateByteSize({}) > 0, `${name} has a CDR layout`);
    }
    assert.throws(() => parseMsgFile('float64 x\nfloat64[ y\n', 'bad.msg', 'p/msg/Bad'), /bad\.msg: not a ROS 2 message definition \(Could not parse line/);
  });

  it('package.xml files are format 3 and name their dependencies', () => {
    for (const [path, name, deps] of [
      ['msgs/package.xml', 'tempered_mpc_msgs', ['rosidl_default_generators', 'std_msgs', 'rosidl_default_runtime']],
      ['ros/package.xml', 'tempered_mpc', ['tempered_mpc_msgs', 'sensor_msgs', 'geometry_msgs', 'std_msgs', 'rosgraph_msgs', 'lifecycle_msgs', 'launch_ros', 'nodejs']],
    ] as const) {
      const xml = readFileSync(join(ROOT, path), 'utf8');
      assert.match(xml, /<package format="3">/, path);
      assert.match(xml, new RegExp(`<name>${name}</name>`), path);
      const named = [...xml.matchAll(/<(?:\w+_)?depend>([\w]+)<\/(?:\w+_)?depend>/g)].map((m) => m[1]);
      for (const d of deps) assert.ok(named.includes(d), `${path} names ${d}`);
    }
    assert.match(readFileSync(join(ROOT, 'msgs/package.xml'), 'utf8'), /<member_of_group>rosidl_interface_packages<\/member_of_group>/);
    assert.match(readFileSync(join(ROOT, 'msgs/CMakeLists.txt'), 'utf8'), /rosidl_generate_interfaces\(\$\{PROJECT_NAME\}/);
  });

  it('every launch file compiles with python3 -m py_compile', () => {
    const files = readdirSync(join(ROOT, 'launch')).filter((f) => f.endsWith('.py')).map((f) => join(ROOT, 'launch', f));
    assert.ok(files.filter((f) => f.endsWith('.launch.py')).length >= 4);
    const out = mkdtempSync(join(tmpdir(), 'tmpc-pyc-'));
    for (const f of files) {
      const r = spawnSync('python3', ['-c', 'import py_compile, sys; py_compile.compile(sys.argv[1], cfile=sys.argv[2], doraise=True)', f, join(out, 'x.pyc')], { encoding: 'utf8' });
      assert.equal(r.status, 0, `${f}: ${r.stderr}`);
    }
  });
});

describe('wire format: every message the nodes publish or take, through CDR and back', () => {
  const pendulum = model('pendulum');
  const acrobot = model('acrobot');
  const slider = model('pusher-slider');

  it('state and goal as sensor_msgs/JointState: positions then velocities, in the configured joint order', () => {
    const codec = new StateCodec(acrobot);
    const y = [0.3, -1.2, 2.5, -0.25];
    const back = codec.decode(wire(TYPES.jointState, codec.encode(y, 12.25, 'base')));
    assert.deepEqual(back, { ok: true, values: y, stampS: 12.25 });
    const renamed = new StateCodec(acrobot, ['shoulder', 'elbow']);
    const msg = wire<{ name: string[] }>(TYPES.jointState, renamed.encode(y, 1));
    assert.deepEqual(msg.name, ['shoulder', 'elbow']);
    assert.throws(() => new StateCodec(acrobot, ['shoulder']), /jointNames: system 'acrobot' has 2 joint\(s\) \(q1, q2\), got 1 name/);
  });

  it('the slider pose as geometry_msgs/PoseStamped, yaw through the quaternion', () => {
    const codec = new StateCodec(slider);
    for (const yaw of [0, 0.7, -2.9, 3.1]) {
      const back = codec.decode(wire(TYPES.poseStamped, codec.encode([0.3, -0.2, yaw], 3)));
      assert.ok(back.ok);
      assert.ok(Math.abs(back.values[0] - 0.3) < 1e-12 && Math.abs(back.values[1] + 0.2) < 1e-12);
      assert.ok(Math.abs(Math.atan2(Math.sin(back.values[2] - yaw), Math.cos(back.values[2] - yaw))) < 1e-12, `yaw ${yaw}`);
    }
  });

  it('command as std_msgs/Float64MultiArray, plan and status as tempered_mpc_msgs, /clock as rosgraph_msgs/Clock', async () => {
    const session = await ControllerSession.create(resolveRunParams('pendulum', { planner: 'mppi', threads: 1, 'mppi.samples': 32, 'mppi.iterations': 1 }), { lockstep: true });
    try {
      session.onStateMessage(session.codec.encode([0.2, 0.1], 0), 0);
      const tick = await session.tick(0);
      const command = wire<{ data: Float64Array; layout: { dim: { label: string; size: number }[] } }>(TYPES.command, session.commandMessage(tick));
      assert.deepEqual(Array.from(command.data), tick.control);
      assert.deepEqual(command.layout.dim.map((d) => [d.label, d.size]), [['u', 1]]);
      assert.deepEqual(decodeCommand(pendulum, command), { ok: true, control: tick.control });

      const plan = wire<{ controls: Float64Array; states: Float64Array; times: Float64Array; planner: string; cost: number }>(TYPES.plan, session.planMessage(tick));
      assert.equal(plan.planner, 'mppi');
      assert.equal(plan.controls.length, 20, 'the MPC horizon of the pendulum');
      assert.equal(plan.states.length, 2 * 21);
      assert.deepEqual(Array.from(plan.states.subarray(0, 2)).map((v) => +v.toFixed(9)), [0.2, 0.1], 'the prediction starts at the planned-from state');
      assert.ok(Math.abs(plan.times[20] - 2) < 1e-12);

      const status = wire<Record<string, unknown>>(TYPES.status, session.statusMessage({ ...tick, cost: NaN }));
      assert.equal(status.mode_name, 'ok');
      assert.equal(status.mode, 0);
      assert.ok(Number.isNaN(status.cost as number), 'NaN travels as NaN in CDR');
      assert.deepEqual(status.info_names, ['iterations', 'rollouts']);
      // the planner's diagnostics as named series (NamedSeries[]), as MPPI's registry entry declares them
      const series = status.series as { name: string; values: Float64Array }[];
      assert.deepEqual(series.map((x) => x.name), ['cost_spread', 'sigma']);
      assert.equal(series[0].values.length, 4);
      assert.deepEqual(Array.from(series[1].values), tick.diagnostics!.series!.sigma);
      assert.ok(Math.abs((status.budget_ms as number) - 80) < 1e-9, 'the default budget: 80% of the period');

      // every controller channel of the channel table builds a message of its declared type
      for (const c of TICK_CHANNELS) {
        const m = c.build!(session, tick);
        if (c.name === 'state_estimate') assert.equal(m, undefined, 'no estimator, no estimate');
        else assert.doesNotThrow(() => wire(c.type, m), c.name);
      }
      assert.deepEqual(Object.keys(logTopics(session.codec.type)), ['/tempered_mpc/state', '/tempered_mpc/true_state', '/tempered_mpc/command', '/tempered_mpc/status', '/tempered_mpc/plan']);

      const clock = wire<{ clock: { sec: number; nanosec: number } }>(TYPES.clock, { clock: toTime(1.7) });
      assert.ok(Math.abs(fromTime(clock.clock)! - 1.7) < 1e-9);
    } finally {
      session.dispose();
    }
  });

  it('stamps survive the nanosecond split, including values that round up to a whole second', () => {
    for (const t of [0, 0.1, 0.3, 2.9999999999, 1e9 + 0.5]) {
      const back = fromTime(toTime(t))!;
      assert.ok(Math.abs(back - t) < 1e-9 * Math.max(1, t / 1e6), `${t} -> ${back}`);
      assert.ok(toTime(t).nanosec < 1e9);
    }
  });
});

describe('bad state and goal messages: a reason, never a throw', () => {
  const acrobot = new StateCodec(model('acrobot'));
  const slider = new StateCodec(model('pusher-slider'));
  const header = { stamp: { sec: 1, nanosec: 0 }, frame_id: '' };
  const cases: [StateCodec, unknown, RegExp][] = [
    [acrobot, { header, name: ['q2', 'q1'], position: [0, 0], velocity: [0, 0], effort: [] }, /joint names \[q2, q1\] do not match the configured \[q1, q2\] \(names and order must match\)/],
    [acrobot, { header, name: ['q1', 'q2'], position: [0], velocity: [0, 0], effort: [] }, /position has 1 values for 2 joint/],
    [acrobot, { header, name: ['q1', 'q2'], position: [0, 0], velocity: [0, -Infinity], effort: [] }, /velocity of joint 'q2' is not a finite number \(-Infinity\)/],
    [acrobot, { name: ['q1', 'q2'], position: [0, 0], velocity: [0, 0] }, /header\.stamp is missing or malformed/],
    [acrobot, { header: { stamp: { sec: 1, nanosec: 2e9 }, frame_id: '' }, name: ['q1', 'q2'], position: [0, 0], velocity: [0, 0] }, /header\.stamp is missing or malformed/],
    [acrobot, null, /not a message/],
    [acrobot, { header, name: 'q1,q2', position: [0, 0], velocity: [0, 0] }, /joint names \[\] do not match/],
    [slider, { header, pose: { position: { x: 0, y: 0, z: 0 }, orientation: { x: 0, y: 0, z: 0, w: 0 } } }, /orientation is not a unit quaternion \(norm 0\.0000\)/],
    [slider, { header, pose: { position: { x: 0, y: 0, z: 0 }, orientation: { x: 0.7071068, y: 0, z: 0, w: 0.7071068 } } }, /tilted out of the plane/],
    [slider, { header, pose: { position: { x: NaN, y: 0, z: 0 }, orientation: { x: 0, y: 0, z: 0, w: 1 } } }, /pose\.position\.x is not a finite number \(NaN\)/],
    [slider, { header }, /pose\.position or pose\.orientation is missing/],
  ];
  for (const [codec, msg, why] of cases) {
    it(`${codec.model.name}: ${why.source.slice(0, 60)}`, () => {
      const d = codec.decode(msg);
      assert.equal(d.ok, false);
      assert.match((d as { reason: string }).reason, why);
    });
  }

  it('a session counts refused states and goals and keeps the last reason for the status', async () => {
    const session = await ControllerSession.create(resolveRunParams('acrobot', { planner: 'mppi', threads: 1, 'mppi.samples': 16, 'mppi.iterations': 1 }), { lockstep: true });
    try {
      assert.match(session.onGoalMessage({ header, name: ['q1'], position: [3], velocity: [0] })!, /goal: joint names \[q1\]/);
      assert.match(session.onStateMessage({ header, name: ['q1', 'q2'], position: [0, NaN], velocity: [0, 0] }, 1)!, /position of joint 'q2'/);
      const tick = await session.tick(1);
      assert.equal(tick.mode, 'waiting');
      const status = session.statusMessage(tick);
      assert.deepEqual([status.rejected_goals, status.rejected_states], [1, 1]);
      assert.match(status.last_rejection, /position of joint 'q2'/);
      assert.ok(tick.control.every(Number.isFinite));
    } finally {
      session.dispose();
    }
  });
});
