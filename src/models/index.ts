import { acrobot } from './acrobot.js';
import { cartDoublePendulum } from './cart-double-pendulum.js';
import { doubleIntegrator } from './double-integrator.js';
import { ModelDefinition, ModelDefinitionError } from './model.js';
import { loadModelModule, probeAtX0 } from './module.js';
import { pendulum } from './pendulum.js';
import { pusherSlider } from './pusher-slider.js';
import { shekel } from './shekel.js';
import { InputError } from '../input-error.js';
import { text, TextParam } from '../params.js';

/** Every model the project ships, by name. Adding a model is one file plus one line here. */
export const MODELS: ReadonlyMap<string, ModelDefinition> = new Map(
  ([pendulum, acrobot, cartDoublePendulum, pusherSlider, doubleIntegrator, shekel] as ModelDefinition[]).map((d) => [d.name, d]),
);

/** Model files loaded in this process (or thread), by the `system` text that named them. */
const LOADED = new Map<string, Promise<ModelDefinition>>();
const READY = new Map<string, ModelDefinition>();

/** A `system` that names a file rather than a built-in model: a JavaScript module (.js, .mjs) or a URDF with its task YAML beside it. */
export function isModelFile(system: string): boolean {
  return /\.(m?js|urdf)$/i.test(system);
}

const unknownSystem = (name: string) =>
  new InputError(`unknown system '${name}' (known: ${[...MODELS.keys()].join(', ')}; or a model file: a module ending in .js or .mjs, or a .urdf)`);

/**
 * The model a `system` names: a built-in, or a model file loaded once per
 * process and thread (a planner's thread loads it again from the same path).
 * Every door awaits this before it resolves parameters, so everything after
 * can look the model up synchronously (modelDefinition).
 */
export function loadSystem(system: string): Promise<ModelDefinition> {
  const builtIn = MODELS.get(system);
  if (builtIn) return Promise.resolve(builtIn);
  if (!isModelFile(system)) return Promise.reject(unknownSystem(system));
  let loading = LOADED.get(system);
  if (!loading) {
    const load = /\.urdf$/i.test(system) ? loadUrdf(system) : loadModelModule(system, [...MODELS.keys()]);
    loading = load.then((def) => {
      READY.set(system, def);
      return def;
    });
    // a refused file is tried again next time (the user may fix it)
    loading.catch(() => LOADED.delete(system));
    LOADED.set(system, loading);
  }
  return loading;
}

export function modelDefinition(name: string): ModelDefinition {
  const def = MODELS.get(name) ?? READY.get(name);
  if (def) return def;
  // a door that forgot to load the file is a bug, not the user's mistake
  if (isModelFile(name)) throw new Error(`model file ${name} is used before it was loaded (loadSystem)`);
  throw unknownSystem(name);
}

/** The `system` parameter of a node: a built-in model's name or a model file's path (checked when it is loaded). */
export function systemParam(doc: string, readOnly: string): TextParam {
  return text('pendulum', `${doc}: ${[...MODELS.keys()].join(', ')}, or a model file (a module .js, .mjs; a .urdf)`, { maxLength: 4096, readOnly });
}

/** A URDF model, probed at x0 like a module (a tree whose dynamics are singular there is refused now). */
async function loadUrdf(path: string): Promise<ModelDefinition> {
  const refuse = (why: string) => new InputError(`URDF ${path}: ${why}`);
  let def: ModelDefinition;
  try {
    // the XML parser loads only when a URDF is named
    const { urdfModel } = await import('./urdf.js');
    def = urdfModel(path);
  } catch (e) {
    // defineModel's refusal names the field; the file goes in front, as for every other URDF refusal
    if ((e as Error)?.name === 'ModelDefinitionError') throw refuse((e as ModelDefinitionError).why);
    if (e instanceof InputError) throw e;
    throw refuse(String((e as Error).message).split('\n')[0]);
  }
  if (MODELS.has(def.name)) throw refuse(`robot name '${def.name}' is a built-in system's: give it another (name: in the task YAML)`);
  probeAtX0(def, refuse);
  return def;
}
