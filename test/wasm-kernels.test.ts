import assert from 'node:assert/strict';
import { buildStepGraphs } from '../src/kernels/graphs.js';
import { compileKernelSource, CpuKernel, jsKernelSource, jsScratchLength, KernelKind } from '../src/kernels/js-source.js';
import { wasmKernelSource } from '../src/kernels/wasm-source.js';
import { add, asin, atan2, abs, clamp, cos, defineModel, exp, gt, inside, log, max, min, mul, num, sin, sq, sqrt, sub, tanh } from '../src/index.js';
import { MODELS } from '../src/models/index.js';
import { Model, resolveModel } from '../src/models/model.js';
import { Rng } from '../src/random.js';
import { model, testControls } from './helpers.js';

const KINDS: KernelKind[] = ['cost', 'trajectory', 'grad'];

interface Run { C: Float64Array; A: Float64Array }

/** Runs a kernel over every sample in two calls (an odd first chunk, so one vector pair has a spare lane). */
function runKernel(fn: CpuKernel, m: Model, kind: KernelKind, scratch: number, U: Float64Array, W: Float64Array, x0: Float64Array): Run {
  const M = U.length / (m.horizon * m.controlDim);
  const A = new Float64Array(kind === 'grad' ? U.length : kind === 'trajectory' ? M * (m.horizon + 1) * m.stateDim : 0);
  const C = new Float64Array(M);
  const S = new Float64Array(scratch);
  const UP = new Float64Array(m.controlDim).fill(0.05);
  const R = Float64Array.from(m.goal);
  const cut = Math.min(M, 7);
  fn(U, x0, UP, R, W, C, A, S, 0, cut);
  fn(U, x0, UP, R, W, C, A, S, cut, M);
  return { C, A };
}

/** Largest relative difference over samples, each sample's block compared in the max-norm. */
function blockError(got: Float64Array, want: Float64Array, samples: number): number {
  const per = want.length / samples;
  let worst = 0;
  for (let s = 0; s < samples; s++) {
    let diff = 0;
    let size = 0;
    for (let i = s * per; i < (s + 1) * per; i++) {
      diff = Math.max(diff, Math.abs(got[i] - want[i]));
      size = Math.max(size, Math.abs(want[i]));
    }
    if (diff > 0 || Number.isNaN(diff)) worst = Math.max(worst, Number.isNaN(diff) ? Infinity : diff / Math.max(size, 1e-300));
  }
  return worst;
}

function compare(m: Model, kind: KernelKind, noise: boolean, U: Float64Array, x0: Float64Array, seed: number) {
  const g = buildStepGraphs(m, noise);
  const js = compileKernelSource(jsKernelSource(g, kind));
  const wasm = compileKernelSource(wasmKernelSource(g, kind));
  const M = U.length / (m.horizon * m.controlDim);
  const W = noise ? new Rng(seed).fillNormal(new Float64Array(M * m.horizon * m.noiseDim), 0.1) : new Float64Array(0);
  const want = runKernel(js, m, kind, jsScratchLength(g, kind), U, W, x0);
  const got = runKernel(wasm, m, kind, 0, U, W, x0);
  return { want, got, M };
}

describe('WebAssembly SIMD kernels against the JavaScript reference kernels (f64)', () => {
  for (const name of MODELS.keys()) {
    it(`${name}: costs to 1e-12, gradients and states to 1e-9 relative per sample, odd batches included`, () => {
      const m = model(name);
      for (const noise of m.noiseDim ? [false, true] : [false]) {
        for (const kind of KINDS) {
          const U = testControls(m, 13, 3);
          const { want, got, M } = compare(m, kind, noise, U, Float64Array.from(m.x0), 4);
          for (let s = 0; s < M; s++) {
            const rel = Math.abs(got.C[s] - want.C[s]) / Math.max(1e-300, Math.abs(want.C[s]));
            assert.ok(rel < 1e-12, `${kind}${noise ? ' with noise' : ''}, sample ${s}: cost ${got.C[s]} vs ${want.C[s]}`);
          }
          if (kind !== 'cost') assert.ok(blockError(got.A, want.A, M) < 1e-9, `${kind}${noise ? ' with noise' : ''}: outputs differ by ${blockError(got.A, want.A, M)}`);
        }
      }
    });
  }

  // Every operation the expression graph has, over arguments from 1e-3 to 1e5 in size (the vector sin/cos reduce by pi/2 exactly there).
  const probe = defineModel({
    name: 'probe', summary: 'every graph operation once', stateNames: ['x', 'v'], physicalUnits: ['1', '1'],
    sensor: { kind: 'joints', joints: ['x'] }, controlNames: ['u'], controlUnits: ['1'],
    params: { dtS: num(1, 'step', { min: 1e-6 }), horizon: num(3, 'horizon', { min: 1, max: 10, integer: true }) },
    x0: [0, 0], goal: [0, 0], controlLimits: { lower: [-1], upper: [1] },
    step: ([x, v], [u]) => [add(x, u), v],
    stageCost: ([x], [u], [p]) => {
      const terms = [
        sin(x), cos(x), mul(sin(u), 3), sin(add(x, u)), cos(sub(x, u)), exp(mul(0.001, x)), log(add(1, sq(x))), tanh(mul(0.01, x)), asin(tanh(mul(0.1, x))),
        atan2(x, add(u, 0.5)), sqrt(abs(x)), min(x, u), max(x, p), mul(gt(x, u), 2), mul(inside(x, -10, 10), 5), clamp(x, -100, 100),
        sub(mul(x, u), mul(p, p)), mul(1e-3, sq(x)),
      ];
      return terms.reduce((a, b) => add(a, b));
    },
    terminalCost: ([x]) => add(sin(x), cos(mul(2, x))),
  });
  const probeModel = resolveModel(probe, {});

  it('every operation (sin, cos, sin and cos of sums by angle addition, exp, log, tanh, asin, atan2, sqrt, abs, min, max, gt, inside, clamp) agrees over |x| from 1e-3 to 1e5', () => {
    const rng = new Rng(9);
    for (let trial = 0; trial < 40; trial++) {
      const scale = 10 ** (-3 + 8 * rng.uniform());
      const x0 = Float64Array.of((rng.uniform() * 2 - 1) * scale, 0);
      const U = Float64Array.from({ length: 9 * 3 }, () => (rng.uniform() * 2 - 1) * scale);
      for (const kind of KINDS) {
        const { want, got, M } = compare(probeModel, kind, false, U, x0, trial);
        for (let s = 0; s < M; s++) {
          const rel = Math.abs(got.C[s] - want.C[s]) / Math.max(1, Math.abs(want.C[s]));
          assert.ok(rel < 1e-13, `x0 ${x0[0]}, ${kind}, sample ${s}: ${got.C[s]} vs ${want.C[s]}`);
        }
        if (kind === 'grad') assert.ok(blockError(got.A, want.A, M) < 1e-11, `x0 ${x0[0]}: gradient differs by ${blockError(got.A, want.A, M)}`);
      }
    }
  });

  it('NaN and infinite controls give the same non-finite costs as the reference', () => {
    const U = Float64Array.of(NaN, 0, 0, Infinity, 1, 2, -Infinity, 0, 0, 1, 1, 1);
    for (const kind of KINDS) {
      const { want, got } = compare(probeModel, kind, false, U, Float64Array.of(0.5, 0), 1);
      assert.deepEqual(Array.from(got.C, Number.isNaN), Array.from(want.C, Number.isNaN), `${kind}: NaN costs ${got.C} vs ${want.C}`);
      assert.ok(Number.isFinite(got.C[3]) && Math.abs(got.C[3] - want.C[3]) < 1e-12 * Math.abs(want.C[3]), 'the finite sample is unaffected');
    }
  });
});
