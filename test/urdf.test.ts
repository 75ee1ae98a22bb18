import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebGpuBackend } from '../src/kernels/index.js';
import { buildStepGraphs } from '../src/kernels/graphs.js';
import { compileStepFunction } from '../src/kernels/js-source.js';
import { InputError } from '../src/input-error.js';
import { loadSystem, modelDefinition } from '../src/models/index.js';
import { resolveModel } from '../src/models/model.js';
import { Rng } from '../src/random.js';
import { runLoop } from '../src/run/loop.js';
import { assemble, resolveRunParams } from '../src/run/setup.js';
import { cpu, model, testControls } from './helpers.js';
import { webgpuMissing } from './support/webgpu.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const ACROBOT_URDF = join(REPO, 'test', 'robots', 'acrobot.urdf');
const ARM3_URDF = join(REPO, 'docs', 'your-robot', 'arm3.urdf');
const IIWA_URDF = join(REPO, 'test', 'robots', 'iiwa14.urdf');

/** Five-point central difference (as test/gradients.test.ts). */
function centralDifference(f: (d: number) => number, h: number): number {
  return (-f(2 * h) + 8 * f(h) - 8 * f(-h) + f(-2 * h)) / (12 * h);
}

describe('URDF: rigid-body dynamics from a URDF (ABA in the expression graph)', function () {
  this.timeout(300000);
  before(async () => {
    for (const file of [ACROBOT_URDF, ARM3_URDF, IIWA_URDF]) await loadSystem(file);
  });

  it('the acrobot written as a URDF reproduces the built-in acrobot\'s rollout to 1e-9', () => {
    const fromUrdf = compileStepFunction(buildStepGraphs(model(ACROBOT_URDF), false));
    const builtIn = compileStepFunction(buildStepGraphs(model('acrobot'), false));
    const rng = new Rng(3);
    for (const start of [[0, 0, 0, 0], [0.3, -0.2, 0.5, 1], [3, 0.1, -1, 2]]) {
      let a = [...start];
      let b = [...start];
      let worst = 0;
      for (let t = 0; t < 200; t++) {
        // beyond the limits too: both clip at |u| = 1
        const u = [2.4 * rng.uniform() - 1.2];
        a = fromUrdf(a, u, []);
        b = builtIn(b, u, []);
        worst = Math.max(worst, ...a.map((v, i) => Math.abs(v - b[i])));
      }
      assert.ok(worst < 1e-9, `from [${start}]: worst difference ${worst.toExponential(2)} over 200 steps`);
      assert.ok(Math.abs(b[0] - start[0]) > 0.1, 'the rollout moved');
    }
  });

  for (const [label, file, overrides] of [['acrobot.urdf', ACROBOT_URDF, {}], ['arm3.urdf (3 joints, end-effector cost)', ARM3_URDF, { horizon: 8 }], ['iiwa14.urdf (7 joints)', IIWA_URDF, { horizon: 4 }]] as const) {
    it(`${label}: exact gradients against finite differences to 1e-6 relative`, () => {
      const m = model(file, overrides);
      const backend = cpu(m);
      const U = testControls(m, 1, 7).map((v) => 0.5 * v);
      const { grad } = backend.costGradSync({ controls: U });
      const scale = Math.max(...grad.map(Math.abs));
      assert.ok(scale > 0);
      let worst = 0;
      for (let i = 0; i < U.length; i++) {
        const fd = centralDifference((d) => {
          const V = U.slice();
          V[i] += d;
          return backend.costSync({ controls: V })[0];
        }, 1e-4);
        worst = Math.max(worst, Math.abs(fd - grad[i]) / Math.max(Math.abs(grad[i]), 1e-3 * scale));
      }
      assert.ok(worst < 1e-6, `worst relative error ${worst.toExponential(2)}`);
    });
  }

  it('forward kinematics: the 3-link arm stands 1.2 m tall at q = 0, and its goal posture puts the tool on the goal', () => {
    const def = modelDefinition(ARM3_URDF);
    const m = resolveModel(def);
    const tip = (x: readonly number[]) => def.sketch!(x, m.params).at(-1)!;
    assert.deepEqual(tip([0, 0, 0, 0, 0, 0]).map((v) => +v.toFixed(12)), [0, 1.2]);
    const [x, z] = tip(m.goal);
    assert.ok(Math.hypot(x - m.params.goalX, z - m.params.goalZ) < 1e-6, `goal posture puts the tool at (${x}, ${z})`);
    assert.equal(def.goalRegion!.contains(m.goal, m.goal, m.params), true);
    assert.equal(def.goalRegion!.contains(m.x0, m.goal, m.params), false);
  });

  it('CPU (f64) and WebGPU (f32) kernels agree on the URDF models', async function () {
    const missing = await webgpuMissing();
    if (missing) {
      console.log(`      skipping: ${missing}`);
      this.skip();
    }
    for (const [file, overrides] of [[ACROBOT_URDF, {}], [ARM3_URDF, { horizon: 10 }]] as const) {
      const m = model(file, overrides);
      const U = testControls(m, 3, 21).map((v) => 0.5 * v);
      const ref = cpu(m).costGradSync({ controls: U });
      const gpu = await WebGpuBackend.create(m);
      const got = await gpu.costGrad({ controls: U });
      for (let s = 0; s < 3; s++) assert.ok(Math.abs(got.cost[s] - ref.cost[s]) / Math.abs(ref.cost[s]) < 1e-3, `${m.name} sample ${s}: ${got.cost[s]} vs ${ref.cost[s]}`);
      const size = Math.max(...ref.grad.map(Math.abs));
      const diff = Math.max(...ref.grad.map((g, i) => Math.abs(got.grad[i] - g)));
      assert.ok(diff / size < 1e-3, `${m.name}: gradient error ${diff} against |g| ${size}`);
    }
  });

  it('MPC (MPPI, the task file\'s tuning) brings the 3-link arm\'s tool to its goal in closed loop', async () => {
    const params = resolveRunParams(ARM3_URDF, { planner: 'mppi', seed: 0, threads: 1 });
    const { session, sim } = await assemble(params, { lockstep: true });
    try {
      const { summary } = await runLoop(sim, session, { durationS: 4, lockstep: true });
      assert.equal(summary.success, true, `tool to goal: ${JSON.stringify(summary)}`);
    } finally {
      session.dispose();
    }
  });
});

describe('URDF: what cannot be simulated is refused, naming the element', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'tempered-mpc-urdf-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const ARM = readFileSync(ARM3_URDF, 'utf8');
  const TASK = readFileSync(ARM3_URDF.replace(/\.urdf$/, '.yaml'), 'utf8');

  const cases: [string, (urdf: string) => string, RegExp, ((task: string) => string)?][] = [
    ['malformed XML', (u) => u.replace('</robot>', ''), /not well-formed XML at line \d+/],
    ['a missing inertial', (u) => u.replace(/<link name="link2">\s*<inertial>[\s\S]*?<\/inertial>/, '<link name="link2">'), /<link name="link2"> has no <inertial>, but <joint name="elbow"> moves it/],
    ['a loop', (u) => u.replace('</robot>', '<joint name="back" type="fixed"><parent link="link3"/><child link="link1"/></joint></robot>'), /<link name="link1"> is the child of both <joint name="shoulder"> and <joint name="back">: a loop/],
    ['an unknown joint type', (u) => u.replace('<joint name="elbow" type="revolute">', '<joint name="elbow" type="floating">'), /<joint name="elbow"> has type 'floating': only revolute, continuous, prismatic, fixed/],
    ['a zero-mass link that is actuated', (u) => u.replace('<mass value="0.5"/>', '<mass value="0"/>'), /<link name="link3"> has zero mass, but <joint name="wrist"> that moves it is actuated/],
    ['a joint naming no link', (u) => u.replace('<child link="tool"/>', '<child link="gripper"/>'), /<joint name="tool_joint"><child link="gripper"> names no <link>/],
    ['a bad number', (u) => u.replace('<origin xyz="0 0 0.4"/>', '<origin xyz="0 0.4"/>'), /<joint name="elbow"><origin xyz> must be 3 finite numbers, got '0 0.4'/],
    ['an inertia without ixx', (u) => u.replace('<inertia ixx="0.01333" ', '<inertia '), /<link name="link1"><inertial><inertia ixx> is missing/],
    ['a zero axis', (u) => u.replace('<axis xyz="0 1 0"/>', '<axis xyz="0 0 0"/>'), /<joint name="shoulder"><axis xyz> is the zero vector/],
    ['two roots', (u) => u.replace('</robot>', '<link name="floating_box"><inertial><mass value="1"/><inertia ixx="1" iyy="1" izz="1"/></inertial></link></robot>'), /links 'base' and 'floating_box' are both roots/],
    ['an actuated joint the URDF lacks', (u) => u, /task: actuated joint 'hip' is not a joint of the URDF/, (t) => t.replace('actuated: [shoulder, elbow, wrist]', 'actuated: [shoulder, elbow, hip]')],
    ['a goal out of reach', (u) => u, /goal\.endEffector\.position \[3, 0, 0\.5\] is out of reach \(the closest posture found from x0 stays 1\.\d+ m from it\)/, (t) => t.replace('position: [0.6, 0, 0.5]', 'position: [3, 0, 0.5]')],
    ['an absurd horizon in the task', (u) => u, /URDF \S+arm\.urdf: field params\.horizon must be <= 10000, its default is 1000000000/, (t) => t.replace('horizon: 40', 'horizon: 1000000000')],
    ['an unknown task key', (u) => u, /arm\.yaml: unknown key 'integrater'/, (t) => t.replace('integrator: rk4', 'integrater: rk4')],
  ];
  for (const [what, edit, reason, editTask] of cases) {
    it(what, async () => {
      const file = join(dir, 'arm.urdf');
      writeFileSync(file, edit(ARM));
      writeFileSync(join(dir, 'arm.yaml'), editTask ? editTask(TASK) : TASK);
      await assert.rejects(loadSystem(file), (e: Error) => {
        assert.ok(e instanceof InputError, `an input error: ${e.message}`);
        assert.match(e.message, /^URDF \S+arm\.urdf: /);
        assert.match(e.message, reason);
        assert.equal(e.message.includes('\n'), false);
        return true;
      });
    });
  }

  it('a URDF without its task file beside it', async () => {
    const file = join(dir, 'lonely.urdf');
    writeFileSync(file, ARM);
    await assert.rejects(loadSystem(file), /lonely\.urdf: needs its task file beside it, \S+lonely\.yaml/);
  });
});
