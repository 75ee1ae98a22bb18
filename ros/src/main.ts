#!/usr/bin/env node
/**
 * The ROS 2 executables: `ros2 run tempered_mpc controller` and
 * `ros2 run tempered_mpc simulator` run this file with the node's name as
 * the first argument; parameters, remaps and namespaces come as usual after
 * --ros-args. Needs a sourced ROS 2 and rclnodejs.
 *
 * Signals take the process's one shutdown path (src/shutdown.ts), not
 * rclnodejs's own SIGINT handler, which destroys the nodes under a tick
 * still planning (the "publisher pointer is invalid" of a lockstep launch)
 * and leaves the telemetry server holding the process open. On SIGINT or
 * SIGTERM the controller publishes the safe command, waits for it to be
 * acknowledged and shuts down; the simulator ends its loop; both exit 0
 * within launch's 5 s grace (a second signal, or 3 s, ends them at once).
 */
import { plannerThreadsClosed } from '../../src/controller/planner-thread.js';
import { InputError } from '../../src/input-error.js';
import { shutdown } from '../../src/shutdown.js';
import { ControllerNode } from './controller-node.js';
import { commandLineRules, loadSystemsNamed } from './overrides.js';
import { loadRclnodejs, Rclnodejs } from './rcl.js';
import { SimulatorNode } from './simulator-node.js';

const USAGE = 'usage: main.js controller|simulator [--ros-args ...]';
/** Within launch's 5 s between SIGINT and SIGTERM. */
const STOP_GRACE_S = 3;

async function main(): Promise<void> {
  const which = process.argv[2];
  if (which !== 'controller' && which !== 'simulator') throw new InputError(USAGE);
  const rcl = await loadRclnodejs();
  await rcl.init();
  rcl.removeSignalHandlers();
  const parameterRules = await commandLineRules(rcl);
  await loadSystemsNamed(parameterRules);
  if (which === 'controller') {
    const c = new ControllerNode(rcl, { parameterRules });
    installStop(rcl, 'tempered_mpc_controller', 'publishing the safe command and shutting down', (why) => c.stop(why));
    // any other way out (an uncaught error, process.exit elsewhere): the safe command if still controlling
    process.on('exit', () => {
      try {
        if (c.owesSafeCommand) c.publishSafe('process exiting');
      } catch {
        // the context is already gone: nothing can be published any more
      }
    });
    c.node.spin();
    // a managed node waits, unconfigured, for `ros2 lifecycle set` or its launch file
    c.node.getLogger().info('unconfigured: waiting for configure (ros2 lifecycle set <node> configure, or a launch file)');
  } else {
    const s = new SimulatorNode(rcl, { parameterRules });
    let loop: Promise<void> = Promise.resolve();
    installStop(rcl, 'tempered_mpc_simulator', 'stopping the simulation', async () => {
      s.stop();
      await loop;
    });
    s.node.spin();
    loop = s.start();
    await loop;
  }
}

/** On the first SIGINT or SIGTERM: `stop`, then the context down, then exit 0. */
function installStop(rcl: Rclnodejs, who: string, finishing: string, stop: (why: string) => Promise<void>): void {
  shutdown.install(true, (code) => process.exit(code), STOP_GRACE_S, who, finishing);
  shutdown.signal.addEventListener('abort', () => {
    const why = `${String(shutdown.signal.reason)} received`;
    stop(why)
      .then(() => rcl.shutdown())
      // a GPU plan in flight is let finish (at most 2 s): a planner thread stopped mid-wait aborts the process
      .then(() => plannerThreadsClosed())
      .then(() => process.exit(0))
      .catch((e: Error) => {
        console.error(`${who}: while stopping: ${e.message}`);
        process.exit(1);
      });
  });
}

main().catch((e: Error) => {
  console.error(`tempered_mpc: ${e.message}`);
  process.exit(e instanceof InputError ? 2 : 1);
});
