import assert from 'node:assert/strict';
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { TYPES } from '../src/interfaces/definitions.js';
import { fromTime } from '../src/interfaces/messages.js';
import { quantile } from '../src/samplers/stats.js';
import { loadRclnodejs, Rclnodejs } from '../ros/src/rcl.js';

/*
 * The nodes on the real rclnodejs and a real ROS 2: two processes started
 * as `ros2 run` starts them, driven and watched from this process through
 * DDS. They need a sourced ROS 2 (ROS_DISTRO set) and rclnodejs installed
 * against it; without one they are skipped, and the run says so.
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MAIN = fileURLToPath(new URL('../ros/src/main.js', import.meta.url));
const PENDULUM_YAML = `${ROOT}launch/config/pendulum.yaml`;
const NS = '/tmpc_it';
const TESTS = [
  'swings the pendulum up through topics (controller and simulator processes, real time, state at 100 Hz)',
  'shows the schema\'s ranges and read-only flags in `ros2 param describe`, and refuses a bad `ros2 param set` with the reason',
];

const distro = process.env.ROS_DISTRO;

describe(`ROS 2 integration (real rclnodejs${distro ? ` on ${distro}` : ''})`, function () {
  if (!distro) {
    before(() => console.log(`      ${TESTS.length} ROS integration tests skipped: ROS_DISTRO is not set (source a ROS 2 installation and install rclnodejs to run them)`));
    for (const t of TESTS) it.skip(t);
    return;
  }

  let rcl: Rclnodejs;
  const children: ChildProcess[] = [];
  const start = (which: string, args: string[]) => {
    const child = spawn(process.execPath, [MAIN, which, '--ros-args', '-r', `__ns:=${NS}`, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout!.on('data', (d) => (output += d));
    child.stderr!.on('data', (d) => (output += d));
    children.push(child);
    return () => output;
  };

  before(async () => {
    rcl = await loadRclnodejs();
    await rcl.init();
  });

  after(() => {
    for (const c of children) c.kill('SIGINT');
    rcl.shutdown();
  });

  it(TESTS[0], async function () {
    this.timeout(120000);
    const simLog = start('simulator', ['--params-file', PENDULUM_YAML, '-p', 'system:=pendulum', '-p', 'stateRateHz:=100.0', '-p', 'x0:=[0.0, 0.0]']);
    const ctlLog = start('controller', ['--params-file', PENDULUM_YAML, '-p', 'planner:=mppi']);
    const node = new rcl.Node('tmpc_integration_probe');
    const nowS = () => Number(node.now().nanoseconds) * 1e-9;
    const states: { stampS: number; receivedS: number }[] = [];
    const commands: number[] = [];
    const truth: { t: number; theta: number; omega: number }[] = [];
    node.createSubscription(TYPES.jointState as never, `${NS}/state`, { qos: rcl.QoS.profileSensorData }, (m: unknown) => {
      states.push({ stampS: fromTime((m as { header: { stamp: unknown } }).header.stamp)!, receivedS: nowS() });
    });
    node.createSubscription(TYPES.jointState as never, `${NS}/true_state`, (m: unknown) => {
      const js = m as { header: { stamp: unknown }; position: number[]; velocity: number[] };
      truth.push({ t: fromTime(js.header.stamp)!, theta: js.position[0], omega: js.velocity[0] });
    });
    node.createSubscription(TYPES.command as never, `${NS}/command`, () => commands.push(nowS()));
    const changeState = node.createClient('lifecycle_msgs/srv/ChangeState' as never, `${NS}/tempered_mpc_controller/change_state`);
    node.spin();
    assert.ok(await changeState.waitForService(20000), `the controller's change_state service appears\n${ctlLog()}`);
    for (const label of ['configure', 'activate']) {
      const ok = await new Promise<boolean>((resolve) => changeState.sendRequest({ transition: { id: 0, label } } as never, (r: unknown) => resolve((r as { success: boolean }).success)));
      assert.ok(ok, `${label}\n${ctlLog()}`);
    }
    const activeAt = nowS();
    await sleep(12000);
    const window = states.filter((s) => s.receivedS > activeAt + 1);
    const rateHz = window.length / (window.at(-1)!.receivedS - window[0].receivedS);
    const transportMs = window.map((s) => 1000 * (s.receivedS - s.stampS));
    // state -> command: from the newest state published before a command to that command's arrival
    const latencyMs = commands.filter((c) => c > activeAt + 1).map((c) => {
      const newest = states.filter((s) => s.stampS <= c).at(-1);
      return newest ? 1000 * (c - newest.stampS) : NaN;
    }).filter(Number.isFinite);
    console.log(`      state delivered at ${rateHz.toFixed(1)} Hz (sent at 100 Hz); state transport p50 ${quantile(transportMs, 0.5).toFixed(2)} ms, p99 ${quantile(transportMs, 0.99).toFixed(2)} ms; state -> command p50 ${quantile(latencyMs, 0.5).toFixed(1)} ms, p99 ${quantile(latencyMs, 0.99).toFixed(1)} ms over ${latencyMs.length} commands`);
    assert.ok(rateHz > 90, `state rate ${rateHz} Hz\n${simLog()}`);
    // the pendulum's goal region: |theta - pi| < 0.1, |omega| < 0.5, over the last 3 s
    const last = truth.filter((s) => s.t > truth.at(-1)!.t - 3);
    const up = last.filter((s) => Math.abs(Math.atan2(Math.sin(s.theta - Math.PI), Math.cos(s.theta - Math.PI))) < 0.1 && Math.abs(s.omega) < 0.5);
    assert.ok(up.length > 0.9 * last.length, `upright for ${up.length} of the last ${last.length} states\n${ctlLog()}`);
    node.destroy();
  });

  it(TESTS[1], function () {
    this.timeout(60000);
    const describe = spawnSync('ros2', ['param', 'describe', `${NS}/tempered_mpc_controller`, 'tsmc.lambda', 'model.horizon'], { encoding: 'utf8' });
    assert.equal(describe.status, 0, describe.stderr);
    assert.match(describe.stdout, /Min value: 0\.0/);
    assert.match(describe.stdout, /Read only: true/);
    const set = spawnSync('ros2', ['param', 'set', `${NS}/tempered_mpc_controller`, 'mppi.samples', '1'], { encoding: 'utf8' });
    assert.match(set.stdout + set.stderr, /mppi\.samples must be >= 2, got 1/);
  });
});
