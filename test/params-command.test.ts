import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { ControllerNode } from '../ros/src/controller-node.js';
import { SimulatorNode } from '../ros/src/simulator-node.js';
import { parseParamsText } from '../src/run/params-file.js';
import { controllerParameterTable, resolveRunParams } from '../src/run/setup.js';
import { createStandIn } from './support/rclnodejs-standin.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

/** Keys joined with '.', integers as bigint: a parameter file as ROS types it. */
function rosTyped(text: string): Record<string, Record<string, unknown>> {
  const doc = parse(text, { intAsBigInt: true }) as Record<string, { ros__parameters: Record<string, unknown> }>;
  const out: Record<string, Record<string, unknown>> = {};
  for (const [node, body] of Object.entries(doc)) {
    out[node] = {};
    for (const [k, v] of Object.entries(body.ros__parameters)) {
      if (v && typeof v === 'object' && !Array.isArray(v)) for (const [k2, v2] of Object.entries(v)) out[node][`${k}.${k2}`] = v2;
      else out[node][k] = v;
    }
  }
  return out;
}

describe('params command: every parameter from the schema, and a complete ROS 2 parameter file', () => {
  for (const system of ['pendulum', 'acrobot', 'pusher-slider']) {
    it(`${system}: the --yaml file resolves to the defaults in \`run\` and configures both nodes (stand-in for rclnodejs) with every type right`, async () => {
      const r = spawnSync(process.execPath, [CLI, 'params', '--system', system, '--yaml'], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      const defaults = resolveRunParams(system, {});
      const fromFile = resolveRunParams(system, parseParamsText(r.stdout, 'generated.yaml'));
      assert.deepEqual(controllerParameterTable(fromFile).values, controllerParameterTable(defaults).values);
      const overrides = rosTyped(r.stdout);
      overrides.tempered_mpc_controller.threads = 1n;
      const s = createStandIn({ overrides });
      const controller = new ControllerNode(s.rcl, { parameterRules: s.parameterRules() });
      const sim = new SimulatorNode(s.rcl, { parameterRules: s.parameterRules() });
      try {
        assert.equal(await controller.transition('configure'), true, s.logs.map((l) => l.text).join('\n'));
        assert.equal(controller.current!.params.system, system);
      } finally {
        await controller.transition('shutdown');
        sim.stop();
        controller.node.destroy();
      }
    });
  }

  it('lists both nodes\' parameters, and refuses an unknown system with exit 2', () => {
    const r = spawnSync(process.execPath, [CLI, 'params', '--system', 'acrobot', '--json'], { encoding: 'utf8' });
    const out = JSON.parse(r.stdout);
    const tsmc = out.tempered_mpc_controller.find((p: { key: string }) => p.key === 'tsmc.particles');
    assert.deepEqual([tsmc.value, tsmc.rule], [32, '[2..65536] integer']);
    assert.ok(out.tempered_mpc_simulator.some((p: { key: string; readOnly: string | null }) => p.key === 'substeps' && p.readOnly));
    const bad = spawnSync(process.execPath, [CLI, 'params', '--system', 'foo'], { encoding: 'utf8' });
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /unknown system 'foo'/);
  });
});
