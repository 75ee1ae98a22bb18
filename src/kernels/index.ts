import type { Model } from '../models/model.js';
import type { RolloutBackend } from './backend.js';
import { CpuBackend } from './cpu.js';
import { WebGpuBackend } from './webgpu.js';
import { InputError } from '../input-error.js';

export type BackendKind = 'cpu' | 'webgpu';
export const BACKENDS: readonly BackendKind[] = ['cpu', 'webgpu'];

export function parseBackend(name: string): BackendKind {
  if (!(BACKENDS as readonly string[]).includes(name)) throw new InputError(`unknown backend '${name}' (known: ${BACKENDS.join(', ')})`);
  return name as BackendKind;
}

export async function createBackend(model: Model, kind: BackendKind, options: { threads?: number } = {}): Promise<RolloutBackend> {
  return kind === 'cpu' ? new CpuBackend(model, options) : WebGpuBackend.create(model);
}

export type { CostGrad, RolloutBackend, RolloutRequest, Trajectories } from './backend.js';
export { CpuBackend } from './cpu.js';
export { WebGpuBackend } from './webgpu.js';
