import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { InputError } from '../input-error.js';
import { defineModel, ModelDefinition, ModelDefinitionError, resolveModel } from './model.js';

const firstLine = (e: unknown) => String((e as Error)?.message ?? e).split('\n')[0];

/**
 * A model from a JavaScript module of the user's (`--system ./cartpole.mjs`):
 * its default export is a model definition (`defineModel` from
 * 'tempered-mpc'). Everything the project does with a built-in model it does
 * with this one; what cannot work is refused here, in one line naming the
 * file and the field, before anything is compiled.
 */
export async function loadModelModule(file: string, builtInNames: readonly string[]): Promise<ModelDefinition> {
  const path = resolve(file);
  const refuse = (why: string) => new InputError(`model module ${file}: ${why}`);
  if (!existsSync(path)) throw refuse('no such file');
  let exported: Record<string, unknown>;
  try {
    exported = await import(pathToFileURL(path).href) as Record<string, unknown>;
  } catch (e) {
    // defineModel's own refusal, raised while the module ran: the field, not the stack
    if ((e as Error)?.name === 'ModelDefinitionError') throw refuse((e as ModelDefinitionError).why);
    throw refuse(`importing it failed: ${firstLine(e)}`);
  }
  const def = exported.default as ModelDefinition | undefined;
  if (def === undefined || def === null || typeof def !== 'object') throw refuse('has no default export of a model definition (export default defineModel({ ... }))');
  // a plain object exported without defineModel gets the same checks
  const model = defineChecked(def, refuse);
  if (builtInNames.includes(model.name)) throw refuse(`name '${model.name}' is a built-in system's: give the model a name of its own`);
  probeAtX0(model, refuse);
  return model;
}

function defineChecked(def: ModelDefinition, refuse: (why: string) => InputError): ModelDefinition {
  try {
    return defineModel(def);
  } catch (e) {
    throw refuse((e as Error)?.name === 'ModelDefinitionError' ? (e as ModelDefinitionError).why : firstLine(e));
  }
}

/**
 * The dynamics and costs evaluated once at x0 with u at the middle of its
 * limits (numbers in, numbers out: the expression helpers fold numbers), so
 * a model that cannot be rolled out is refused now, not as a NaN plan later.
 */
export function probeAtX0(def: ModelDefinition, refuse: (why: string) => InputError): void {
  let model;
  try {
    model = resolveModel(def);
  } catch (e) {
    throw refuse(firstLine(e));
  }
  const x = [...def.x0];
  const u = model.controlLimits.lower.map((lo, i) => {
    const hi = model.controlLimits.upper[i];
    return Number.isFinite(lo) && Number.isFinite(hi) ? (lo + hi) / 2 : Number.isFinite(lo) ? lo : Number.isFinite(hi) ? hi : 0;
  });
  const w = new Array<number>(model.noiseDim).fill(0);
  const call = <T>(field: string, f: () => T): T => {
    try {
      return f();
    } catch (e) {
      throw refuse(`field '${field}' threw at x0: ${firstLine(e)}`);
    }
  };
  const next = call('step', () => def.step(x, u, w, model.params as never));
  if (!Array.isArray(next) || next.length !== model.stateDim) throw refuse(`field 'step' must return ${model.stateDim} values (one per state), got ${Array.isArray(next) ? next.length : typeof next}`);
  const bad = next.findIndex((v) => typeof v !== 'number' || !Number.isFinite(v));
  if (bad >= 0) throw refuse(`field 'step' gives a non-finite ${def.stateNames[bad]} at x0 (${String(next[bad])}): the dynamics are NaN or infinite there`);
  const stage = call('stageCost', () => def.stageCost(x, u, u, [...def.goal], model.params as never));
  if (typeof stage !== 'number' || !Number.isFinite(stage)) throw refuse(`field 'stageCost' is not a finite number at x0 (${String(stage)})`);
  const terminal = call('terminalCost', () => def.terminalCost(x, [...def.goal], model.params as never));
  if (typeof terminal !== 'number' || !Number.isFinite(terminal)) throw refuse(`field 'terminalCost' is not a finite number at x0 (${String(terminal)})`);
}
