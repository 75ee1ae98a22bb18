import { setTimeout as sleep } from 'node:timers/promises';
import { parse } from 'yaml';
import type { StandIn } from './rclnodejs-standin.js';

/** Every message on a topic of the stand-in's bus, as they come. */
export function collect<T>(s: StandIn, topic: string, type: string): T[] {
  const got: T[] = [];
  s.bus.subscribe(topic, type, (m) => got.push(m as T));
  return got;
}

/** Waits until `condition` holds; fails naming `what` after `timeoutMs`. */
export async function until(what: string, condition: () => boolean, timeoutMs = 20000): Promise<void> {
  const start = performance.now();
  while (!condition()) {
    if (performance.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** A ROS 2 parameter file's rules as rcl reads them: one per node key, dotted names, integers typed as integers. */
export function parameterFileRules(text: string): { name: string; parameters: Record<string, unknown> }[] {
  const doc = parse(text, { intAsBigInt: true }) as Record<string, { ros__parameters: Record<string, unknown> }>;
  return Object.entries(doc).map(([name, body]) => {
    const flat: Record<string, unknown> = {};
    const walk = (o: Record<string, unknown>, prefix: string) => {
      for (const [k, v] of Object.entries(o)) {
        if (v && typeof v === 'object' && !Array.isArray(v)) walk(v as Record<string, unknown>, `${prefix}${k}.`);
        else flat[`${prefix}${k}`] = v;
      }
    };
    walk(body.ros__parameters, '');
    return { name, parameters: flat };
  });
}
