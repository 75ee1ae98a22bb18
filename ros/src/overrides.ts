import { isModelFile, loadSystem } from '../../src/models/index.js';
import { Parameter, Rclnodejs } from './rcl.js';

/**
 * Parameter overrides (`--params-file`, `-p`) as ROS 2 resolves them for
 * one node. rcl hands over every rule of the command line, each under the
 * node key it was written with; rclnodejs 2.2 then applies only the keys
 * `/**` and the node's bare name, so a `ros2 param dump` (keyed by the fully
 * qualified name, `/tempered_mpc/tempered_mpc_controller:`) was silently
 * ignored. Here every key is matched as rclcpp matches it (a leading `/`
 * added, `/*` one name, `/**` any number of them, the whole fully qualified
 * name compared), in the order rcl lists the keys, a later key's value
 * winning; and a bare name also matches the node in any namespace, as
 * rclnodejs has always done (rclcpp would match it only at the root).
 */
export interface ParameterRule {
  /** the node key as written: `/ns/name`, `name`, `/**`, `/*\/name` */
  name: string;
  parameters: Parameter[];
}

/** Whether a parameter file's node key applies to the node `/ns/name`. */
export function nodeKeyMatches(key: string, namespace: string, name: string): boolean {
  if (!key.includes('/') && !key.includes('*')) return key === name;
  const fqn = `${namespace.replace(/\/+$/, '')}/${name}`.replace(/^(?!\/)/, '/');
  const absolute = key.startsWith('/') ? key : `/${key}`;
  // rclcpp's rule: each `/*` becomes one name; the `*` left of a `/**` then repeats it (node keys hold only [A-Za-z0-9_/*])
  const pattern = absolute.replaceAll('/*', '(/\\w+)');
  return new RegExp(`^${pattern}$`).test(fqn);
}

/**
 * The overrides that apply to the node `/ns/name`, by parameter name, the
 * last matching key's value; and the names set by keys that name this node
 * rather than every node (a wildcard's extra names are other nodes').
 */
export function overridesFor(rules: readonly ParameterRule[], namespace: string, name: string): { byName: Map<string, Parameter>; named: string[] } {
  const byName = new Map<string, Parameter>();
  const named = new Set<string>();
  for (const rule of rules) {
    if (!nodeKeyMatches(rule.name, namespace, name)) continue;
    for (const p of rule.parameters) {
      byName.set(p.name, p);
      if (!rule.name.includes('*')) named.add(p.name);
    }
  }
  return { byName, named: [...named] };
}

/**
 * Loads every model file a rule names as `system` (a node's model is known
 * only once its parameters are: the nodes look it up, the process loads it
 * first). A file that cannot be a model is refused here, naming it.
 */
export async function loadSystemsNamed(rules: readonly ParameterRule[]): Promise<void> {
  for (const rule of rules) {
    for (const p of rule.parameters) if (p.name === 'system' && typeof p.value === 'string' && isModelFile(p.value)) await loadSystem(p.value);
  }
}

/** Every override rule on the command line, as rcl parsed it (rclnodejs's native binding; its JavaScript keeps only some). */
export async function commandLineRules(rcl: Rclnodejs): Promise<ParameterRule[]> {
  const native = (await import('rclnodejs/lib/native_loader.js' as string)) as { default: { getParameterOverrides(context: unknown): NativeRule[] | undefined } };
  const context = (rcl.Context.defaultContext() as unknown as { handle: unknown }).handle;
  const rules = native.default.getParameterOverrides(context) ?? [];
  return rules.map((r) => ({ name: r.name, parameters: r.parameters.map((p) => new rcl.Parameter(p.name, p.type as never, p.value)) }));
}

interface NativeRule {
  name: string;
  parameters: { name: string; type: number; value: unknown }[];
}
