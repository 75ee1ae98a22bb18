#!/usr/bin/env node
/**
 * The ROS 2 executables: `ros2 run tempered_mpc controller` and
 * `ros2 run tempered_mpc simulator` run this file with the node's name as
 * the first argument; parameters, remaps and namespaces come as usual after
 * --ros-args. Needs a sourced ROS 2 and rclnodejs.
 */
import { ControllerNode } from './controller-node.js';
import { loadRclnodejs } from './rcl.js';
import { SimulatorNode } from './simulator-node.js';

const USAGE = 'usage: main.js controller|simulator [--ros-args ...]';

async function main(): Promise<void> {
  const which = process.argv[2];
  if (which !== 'controller' && which !== 'simulator') throw new Error(USAGE);
  const rcl = await loadRclnodejs();
  await rcl.init();
  if (which === 'controller') {
    const c = new ControllerNode(rcl);
    c.node.spin();
    // a managed node waits, unconfigured, for `ros2 lifecycle set` or its launch file
    c.node.getLogger().info('unconfigured: waiting for configure (ros2 lifecycle set <node> configure, or a launch file)');
  } else {
    const s = new SimulatorNode(rcl);
    s.node.spin();
    await s.start();
  }
}

main().catch((e: Error) => {
  console.error(`tempered_mpc: ${e.message}`);
  process.exit(2);
});
