import { InputError } from '../input-error.js';
import type { PlannerDescriptor } from './descriptor.js';
import { MPPI } from './mppi/index.js';
import { SPO } from './spo/index.js';
import { TRTSMC } from './trtsmc/index.js';
import { TSMC } from './tsmc/index.js';

/**
 * Every receding-horizon planner, one line each; the first is the default.
 * The controller, the planner thread, the parameter tables, the ROS node,
 * the dashboard and the bench commands read this list and nothing else.
 */
export const PLANNERS: readonly PlannerDescriptor[] = [
  TSMC,
  MPPI,
  SPO,
  TRTSMC,
];

export const PLANNER_NAMES = PLANNERS.map((p) => p.name) as readonly string[];

/** The descriptor of a planner named by the user; an unknown name is refused with the known ones. */
export function plannerDescriptor(name: string): PlannerDescriptor {
  const found = PLANNERS.find((p) => p.name === name);
  if (!found) throw new InputError(`unknown planner '${name}' (known: ${PLANNER_NAMES.join(', ')})`);
  return found;
}
