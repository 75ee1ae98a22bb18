import foxgloveSchemas from '@foxglove/schemas/jsonschema.js';
import type { Model, ParamValues } from '../models/model.js';

/** foxglove.SceneUpdate's JSON Schema, from @foxglove/schemas. */
export const SCENE_UPDATE_SCHEMA = (foxgloveSchemas as unknown as { SceneUpdate: object }).SceneUpdate;
export const SCENE_UPDATE = 'foxglove.SceneUpdate';

type Point2 = readonly [number, number];

const time = (s: number) => {
  const sec = Math.max(0, Math.floor(s));
  return { sec, nsec: Math.min(999999999, Math.round((s - sec) * 1e9)) };
};

function line(points: readonly Point2[], rgba: [number, number, number, number], thickness: number) {
  return {
    type: 0, // LINE_STRIP
    pose: { position: { x: 0, y: 0, z: 0 }, orientation: { x: 0, y: 0, z: 0, w: 1 } },
    thickness, scale_invariant: false,
    points: points.map(([x, y]) => ({ x, y, z: 0 })),
    color: { r: rgba[0], g: rgba[1], b: rgba[2], a: rgba[3] },
    colors: [], indices: [],
  };
}

/**
 * The system and its plan as a foxglove.SceneUpdate for Foxglove's 3-D
 * panel, where the model has a planar sketch: the system drawn at the state
 * the plan starts from, and the path of its last point (the pendulum's tip,
 * the slider) along the predicted states. Empty without a sketch or a plan.
 */
export function sceneUpdate(model: Model, stampS: number, frameId: string, predicted: readonly (readonly number[])[]): object {
  const sketch = model.def.sketch;
  if (!sketch || predicted.length === 0) return { deletions: [], entities: [] };
  const p = model.params as ParamValues<string>;
  const entity = (id: string, lines: object[]) => ({
    timestamp: time(stampS), frame_id: frameId || 'world', id, lifetime: { sec: 0, nsec: 0 }, frame_locked: false,
    metadata: [], arrows: [], cubes: [], spheres: [], cylinders: [], lines, triangles: [], texts: [], models: [],
  });
  const body = sketch(predicted[0], p);
  const path = predicted.map((x) => sketch(x, p).at(-1)!);
  return {
    deletions: [],
    entities: [
      ...(body.length > 1 ? [entity('system', [line(body, [0.12, 0.47, 0.71, 1], 0.03)])] : []),
      entity('plan', [line(path, [1, 0.5, 0.05, 1], 0.015)]),
    ],
  };
}
