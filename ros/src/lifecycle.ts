import { LifecycleNode } from './rcl.js';

/**
 * Lifecycle introspection that `ros2 lifecycle list` can read. rclnodejs
 * 2.2 answers GetAvailableTransitions with camelCase fields (`startState`,
 * `goalState`) that the message does not have, so the labels arrive empty;
 * and it never takes the requests of rcl's `get_transition_graph` service,
 * so `ros2 lifecycle list <node> -a` waits forever. Here the first is
 * answered with the message's own fields and the second by a service of
 * this node on the same name and type (GetAvailableTransitions, as rcl's
 * com_interface.c declares it), from rcl_lifecycle's default state machine
 * (default_state_machine.c: the graph every managed node has).
 */

const STATE: Readonly<Record<string, number>> = {
  unconfigured: 1, inactive: 2, active: 3, finalized: 4,
  configuring: 10, cleaningup: 11, shuttingdown: 12, activating: 13, deactivating: 14, errorprocessing: 15,
};

/** [id, label, start, goal] as rcl_lifecycle registers them. */
const GRAPH: readonly (readonly [number, string, string, string])[] = [
  [1, 'configure', 'unconfigured', 'configuring'],
  [10, 'transition_success', 'configuring', 'inactive'],
  [11, 'transition_failure', 'configuring', 'unconfigured'],
  [12, 'transition_error', 'configuring', 'errorprocessing'],
  [2, 'cleanup', 'inactive', 'cleaningup'],
  [20, 'transition_success', 'cleaningup', 'unconfigured'],
  [21, 'transition_failure', 'cleaningup', 'inactive'],
  [22, 'transition_error', 'cleaningup', 'errorprocessing'],
  [3, 'activate', 'inactive', 'activating'],
  [30, 'transition_success', 'activating', 'active'],
  [31, 'transition_failure', 'activating', 'inactive'],
  [32, 'transition_error', 'activating', 'errorprocessing'],
  [4, 'deactivate', 'active', 'deactivating'],
  [40, 'transition_success', 'deactivating', 'inactive'],
  [41, 'transition_failure', 'deactivating', 'active'],
  [42, 'transition_error', 'deactivating', 'errorprocessing'],
  [5, 'shutdown', 'unconfigured', 'shuttingdown'],
  [6, 'shutdown', 'inactive', 'shuttingdown'],
  [7, 'shutdown', 'active', 'shuttingdown'],
  [50, 'transition_success', 'shuttingdown', 'finalized'],
  [51, 'transition_failure', 'shuttingdown', 'finalized'],
  [52, 'transition_error', 'shuttingdown', 'errorprocessing'],
  [60, 'transition_success', 'errorprocessing', 'unconfigured'],
  [61, 'transition_failure', 'errorprocessing', 'finalized'],
  [62, 'transition_error', 'errorprocessing', 'finalized'],
];

interface StateMsg { id: number; label: string }
export interface TransitionDescriptionMsg { transition: StateMsg; start_state: StateMsg; goal_state: StateMsg }

const state = (label: string): StateMsg => ({ id: STATE[label], label });

/** The whole transition graph, as lifecycle_msgs/msg/TransitionDescription. */
export function transitionGraph(): TransitionDescriptionMsg[] {
  return GRAPH.map(([id, label, start, goal]) => ({ transition: { id, label }, start_state: state(start), goal_state: state(goal) }));
}

/** The transitions a request may trigger from `current` (a primary state). */
export function transitionsFrom(current: string): TransitionDescriptionMsg[] {
  return transitionGraph().filter((t) => t.start_state.label === current && t.transition.id < 10);
}

interface Response<T> {
  template: T;
  send(result: T): void;
}

/** Mends the node's GetAvailableTransitions answer and serves get_transition_graph. */
export function serveLifecycleIntrospection(node: LifecycleNode, currentState: () => string): void {
  const handlers = node as unknown as { _onGetAvailableTransitions(request: unknown, response: Response<{ available_transitions: TransitionDescriptionMsg[] }>): void };
  handlers._onGetAvailableTransitions = (_request, response) => {
    const result = response.template;
    result.available_transitions = transitionsFrom(currentState());
    response.send(result);
  };
  node.createService('lifecycle_msgs/srv/GetAvailableTransitions' as never, '~/get_transition_graph', (_request: unknown, response: Response<{ available_transitions: TransitionDescriptionMsg[] }>) => {
    const result = response.template;
    result.available_transitions = transitionGraph();
    response.send(result);
  });
}
