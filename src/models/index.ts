import { acrobot } from './acrobot.js';
import { cartDoublePendulum } from './cart-double-pendulum.js';
import { doubleIntegrator } from './double-integrator.js';
import { ModelDefinition } from './model.js';
import { pendulum } from './pendulum.js';
import { pusherSlider } from './pusher-slider.js';
import { shekel } from './shekel.js';
import { InputError } from '../input-error.js';

/** Every model the project ships, by name. Adding a model is one file plus one line here. */
export const MODELS: ReadonlyMap<string, ModelDefinition> = new Map(
  ([pendulum, acrobot, cartDoublePendulum, pusherSlider, doubleIntegrator, shekel] as ModelDefinition[]).map((d) => [d.name, d]),
);

export function modelDefinition(name: string): ModelDefinition {
  const def = MODELS.get(name);
  if (!def) throw new InputError(`unknown system '${name}' (known: ${[...MODELS.keys()].join(', ')})`);
  return def;
}
