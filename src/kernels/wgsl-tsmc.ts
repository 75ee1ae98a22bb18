import { wgsl } from '../expr/emit.js';
import type { ControlScaling } from '../models/controls.js';
import type { StepGraphs } from './graphs.js';
import { PHILOX_WGSL } from './philox.js';
import { wgslCostGradFunction } from './wgsl-source.js';
import { NO_COST } from './wgsl-mppi.js';
import { StorageSpec, storageDeclarations } from './webgpu.js';

/**
 * Tempered SMC in WGSL (the GPU-resident TSMC planner): particles, their
 * energies, gradients and the HMC scratch stay on the GPU; a whole HMC
 * trajectory (momentum draw, L leapfrog steps each with an exact rollout
 * gradient, the Metropolis test) is a chain of 3L + 2 dispatches in one
 * submit, one invocation per particle each, with the rollout in a single
 * entry point (drivers compile a rollout inlined into a loop very slowly:
 * 16 s on Mesa's software adapter for the pendulum, against 2 s once); the ESS
 * bisection for the next beta, the normalising constant, the weights and the
 * resampling run in one workgroup; the step size adapts on the GPU. The host
 * reads back a handful of numbers per level (beta, to know when to stop) and
 * the plan at the end. The same algorithm as `temperedSmc` with `hmcKernel`
 * and the receding-horizon warm start of `TsmcPlanner`, in f32.
 *
 * Buffers, in binding order:
 *   H    header: u32 words (floats as their bits), see TSMC_HEADER; then x0 (n), uPrev (m), reference (n)
 *   PS   two sets of `capacity` particle records [q (d), dE/dq (d), dU0/dq (d), E, U0]; SC.current says which holds the particles
 *   SCR  per particle: momentum, proposal, its dE/dq and dU0/dq (d each), its E and U0, the move's starting energy
 *   TAPE per particle: the states of its last rollout, for the adjoint sweep
 *   SC   scalars (TSMC_SCALAR), then the level's read-back and the plan
 *   AUX  cumulative weights (N), ancestors (N), acceptance (N), divergence (N), prior mean (d), best (d), Adam's z, m1, m2, best z, best gradient (d each)
 */
export const TSMC_BUFFERS: readonly StorageSpec[] = [
  { name: 'H', element: 'u32', readOnly: true },
  ...['PS', 'SCR', 'TAPE', 'SC', 'AUX'].map((name) => ({ name, element: 'f32' as const, readOnly: false })),
];

export const TSMC_HEADER = {
  particles: 0, tick: 1, seed: 2, carried: 3, flags: 4, leapfrogSteps: 5, polishSteps: 6, shiftSteps: 7, capacity: 8,
  lambda: 9, rho: 10, targetAcceptance: 11, stepSize: 12, priorSigma: 13, priorGamma: 14, startBeta: 15, polishRate: 16,
  context: 17,
} as const;

/** TSMC_HEADER.flags bits */
export const TSMC_FLAG = { cold: 1, systematic: 2, adaptStep: 4 } as const;

export const TSMC_SCALAR = {
  current: 0, beta: 1, betaNext: 2, logZ: 3, stepSize: 4, level: 5, moveIndex: 6, acceptanceSum: 7, divergentSum: 8, moves: 9,
  evalCount: 10, polishStep: 11, polishRate: 12,
  /** read back after every level */
  outLevel: 13,
  /** read back at the end: cost, then the plan (d) */
  outCost: 25, outPlan: 26,
} as const;

/** The per-level read-back, in order. */
export const LEVEL_OUT = ['beta', 'logZ', 'ess', 'acceptance', 'stepSize', 'nonFinite', 'divergent', 'stepSizeNext', 'energyMin', 'energyMax', 'noValid', 'levels'] as const;

const TSMC_STREAM = { init: 0x74736930, resample: 0x74737273, hmc: 0x74736d68 } as const;

/** AUX's regions for a capacity of N particles (the layout is by capacity, so a smaller N keeps it). */
export function tsmcAuxLayout(N: number, d: number) {
  const cum = 0;
  const ancestor = N;
  const acceptance = 2 * N;
  const divergent = 3 * N;
  const priorMean = 4 * N;
  const best = priorMean + d;
  const adamZ = best + d;
  const adamM1 = adamZ + d;
  const adamM2 = adamM1 + d;
  const adamBest = adamM2 + d;
  const adamBestGrad = adamBest + d;
  return { cum, ancestor, acceptance, divergent, priorMean, best, adamZ, adamM1, adamM2, adamBest, adamBestGrad, length: adamBestGrad + d };
}

export const TSMC_WORKGROUP = 64;
const TSMC_REDUCE = 256;

export function wgslTsmcSource(graphs: StepGraphs, scaling: ControlScaling): string {
  const { model } = graphs;
  const { controlDim: m, horizon: T } = model;
  const d = T * m;
  const rec = 3 * d + 2;
  const lit = (v: number) => wgsl.literal(v);
  const H = TSMC_HEADER;
  const SC = TSMC_SCALAR;
  const hf = (word: number) => `bitcast<f32>(H[${word}u])`;
  const bounded = Array.from(scaling.scale, (_, j) => Number.isFinite(model.controlLimits.lower[j]) && Number.isFinite(model.controlLimits.upper[j]));
  // per-particle scratch: momentum, proposal, its dE/dz and dU0/dz (d each), then E, U0 and the starting energy h0
  const ss = 4 * d + 3;
  // the rollout reads particle s's proposal from its scratch and writes dE/dz (dJ/du times the control's half-range) back there
  const costGrad = wgslCostGradFunction(graphs, 'rollout_cost_grad', {
    context: (offset) => hf(H.context + offset - 1),
    control: (o, j) => `(${lit(scaling.center[j])} + ${lit(scaling.scale[j])} * SCR[${o} + s * ${ss - d}u + ${d + j}u])`,
    storeGrad: (o, j, value) => `SCR[${o} + s * ${ss - d}u + ${2 * d + j}u] = (${value}) * ${lit(scaling.scale[j])};`,
    tape: (index) => `TAPE[${index}]`,
  });
  const aux = (region: keyof ReturnType<typeof tsmcAuxLayout>) => {
    const offsets: Record<string, string> = {
      cum: '0u', ancestor: 'CAP', acceptance: '2u * CAP', divergent: '3u * CAP', priorMean: '4u * CAP',
      best: `4u * CAP + ${d}u`, adamZ: `4u * CAP + ${2 * d}u`, adamM1: `4u * CAP + ${3 * d}u`, adamM2: `4u * CAP + ${4 * d}u`,
      adamBest: `4u * CAP + ${5 * d}u`, adamBestGrad: `4u * CAP + ${6 * d}u`,
    };
    return offsets[region];
  };
  const perParticle = (name: string, body: string[]) => [
    `@compute @workgroup_size(${TSMC_WORKGROUP})`,
    `fn ${name}(@builtin(global_invocation_id) gid: vec3<u32>) {`,
    `load_n(); let i = gid.x; if (i >= N) { return; } let base = i * SS;`,
    ...body,
    '}',
  ];
  const single = (name: string, body: string[]) => ['@compute @workgroup_size(1)', `fn ${name}() {`, 'load_n();', ...body, '}'];
  const copyRecordToScratch = `for (var k = 0u; k < D; k = k + 1u) { SCR[base + D + k] = PS[r + k]; SCR[base + 2u * D + k] = PS[r + D + k]; SCR[base + 3u * D + k] = PS[r + 2u * D + k]; } SCR[base + E1] = PS[r + 3u * D]; SCR[base + U1] = PS[r + 3u * D + 1u];`;
  const copyScratchToRecord = `for (var k = 0u; k < D; k = k + 1u) { PS[r + k] = SCR[base + D + k]; PS[r + D + k] = SCR[base + 2u * D + k]; PS[r + 2u * D + k] = SCR[base + 3u * D + k]; } PS[r + 3u * D] = SCR[base + E1]; PS[r + 3u * D + 1u] = SCR[base + U1];`;
  const gradient = 'let g = kE * SCR[base + 2u * D + k] + SCR[base + 3u * D + k];';
  const hmcContext = [
    `let r = record(current(), i); let beta = SC[${SC.betaNext}u];`,
    `let key = vec2<u32>(H[${H.seed}u], ${TSMC_STREAM.hmc}u); let tick = H[${H.tick}u]; let moveIndex = u32(SC[${SC.moveIndex}u]);`,
  ];
  const L = [
    ...storageDeclarations(TSMC_BUFFERS),
    PHILOX_WGSL,
    `const D: u32 = ${d}u;`,
    `const M: u32 = ${m}u;`,
    `const REC: u32 = ${rec}u;`,
    `const SS: u32 = ${ss}u;`,
    `const E1: u32 = ${4 * d}u;`,
    `const U1: u32 = ${4 * d + 1}u;`,
    `const H0: u32 = ${4 * d + 2}u;`,
    `const NO_COST: f32 = ${lit(NO_COST)};`,
    '/** particles now, and the capacity the buffers are laid out for */',
    'var<private> N: u32;',
    'var<private> CAP: u32;',
    `fn load_n() { N = H[${H.particles}u]; CAP = H[${H.capacity}u]; }`,
    `fn bounded(k: u32) -> bool { var b = array<bool, ${m}>(${bounded.join(', ')}); return b[k % M]; }`,
    '/** Particle i\'s record in set `pset`. */',
    'fn record(pset: u32, i: u32) -> u32 { return (pset * CAP + i) * REC; }',
    `fn current() -> u32 { return u32(SC[${SC.current}u]); }`,
    'fn energy_of(pset: u32, i: u32) -> f32 { return PS[record(pset, i) + 3u * D]; }',
    '/** Non-finite costs become NO_COST with a zero gradient: an infinitely bad trajectory, never a number to average. */',
    'fn valid(e: f32) -> bool { let b = bitcast<u32>(e); return (b & 0x7f800000u) != 0x7f800000u && abs(e) < NO_COST; }',
    costGrad,
    '/** the prior\'s sigma this tick: priorSigma when cold, warmSigma around the shifted plan */',
    `fn prior_sigma() -> f32 { return ${hf(H.priorSigma)}; }`,
    '/** The potential beta E / lambda + U0 (beta = 0 ignores E; a non-finite E is infinitely unlikely at beta > 0). */',
    `fn potential(e: f32, u0: f32, beta: f32) -> f32 { if (beta == 0.0) { return u0; } if (e >= NO_COST) { return NO_COST; } return beta / ${hf(H.lambda)} * e + u0; }`,
    '',
    // the one entry point with a rollout in it: every other step is a short kernel, so the driver compiles the rollout once
    '/** E, dE/dz, U0 and dU0/dz of the first SC.evalCount particles\' scratch proposals, into their scratch. */',
    `@compute @workgroup_size(${TSMC_WORKGROUP})`,
    'fn evaluate(@builtin(global_invocation_id) gid: vec3<u32>) {',
    `load_n(); let i = gid.x; if (i >= u32(SC[${SC.evalCount}u])) { return; } let base = i * SS;`,
    'var e = rollout_cost_grad(i);',
    'if (!valid(e)) { e = NO_COST; for (var k = 0u; k < D; k = k + 1u) { SCR[base + 2u * D + k] = 0.0; } }',
    'SCR[base + E1] = e;',
    // the AR(1) prior: e_k = v_k - gamma v_{k-m}, U0 = |e|^2 / (2 sigma^2), dU0/dv_k = (e_k - gamma e_{k+m}) / sigma^2
    `let gamma = ${hf(H.priorGamma)}; let sigma = prior_sigma(); let inv = 1.0 / (sigma * sigma); let mean = ${aux('priorMean')};`,
    'var u = 0.0;',
    'for (var k = 0u; k < D; k = k + 1u) {',
    '  let v = SCR[base + D + k] - AUX[mean + k];',
    '  var ek = v; if (k >= M) { ek = v - gamma * (SCR[base + D + k - M] - AUX[mean + k - M]); }',
    '  u = u + ek * ek;',
    '  var eNext = 0.0; if (k + M < D) { eNext = (SCR[base + D + k + M] - AUX[mean + k + M]) - gamma * v; }',
    '  SCR[base + 3u * D + k] = inv * (ek - gamma * eNext);',
    '}',
    'SCR[base + U1] = 0.5 * inv * u;',
    '}',
    '',
    '/** A new tick: the prior mean is the previous plan shifted (zero when cold), and the counters restart. */',
    `@compute @workgroup_size(${TSMC_WORKGROUP})`,
    'fn prepare_mean(@builtin(global_invocation_id) gid: vec3<u32>) {',
    'load_n(); let k = gid.x; if (k >= D) { return; }',
    `let flags = H[${H.flags}u];`,
    `var j = k + H[${H.shiftSteps}u] * M; if (j >= D) { j = D - M + k % M; }`,
    `AUX[${aux('priorMean')} + k] = select(AUX[${aux('best')} + j], 0.0, (flags & ${TSMC_FLAG.cold}u) != 0u);`,
    'if (k == 0u) {',
    `  SC[${SC.beta}u] = ${hf(H.startBeta)}; SC[${SC.logZ}u] = 0.0; SC[${SC.level}u] = 0.0; SC[${SC.moveIndex}u] = 0.0;`,
    `  SC[${SC.acceptanceSum}u] = 0.0; SC[${SC.divergentSum}u] = 0.0; SC[${SC.moves}u] = 0.0; SC[${SC.evalCount}u] = f32(N);`,
    `  if ((flags & ${TSMC_FLAG.cold}u) != 0u || (flags & ${TSMC_FLAG.adaptStep}u) == 0u) { SC[${SC.stepSize}u] = ${hf(H.stepSize)}; }`,
    '}',
    '}',
    '',
    '/** Initial proposals into the scratch: cold, AR(1) prior draws; warm, the plan itself, the carried particles shifted, and fresh draws. */',
    ...perParticle('prepare', [
      `let cold = (H[${H.flags}u] & ${TSMC_FLAG.cold}u) != 0u; let from_set = current(); let mean = ${aux('priorMean')};`,
      `let shift = H[${H.shiftSteps}u] * M; let key = vec2<u32>(H[${H.seed}u], ${TSMC_STREAM.init}u); let tick = H[${H.tick}u];`,
      `let sigma = prior_sigma(); let gamma = ${hf(H.priorGamma)};`,
      'var block = 0xffffffffu; var normals = vec4<f32>(0.0);',
      'for (var k = 0u; k < D; k = k + 1u) {',
      '  var z: f32;',
      '  if (!cold && i == 0u) { z = AUX[mean + k]; }',
      `  else if (!cold && i < H[${H.carried}u]) { var j = k + shift; if (j >= D) { j = D - M + k % M; } z = PS[record(from_set, i) + j]; }`,
      '  else {',
      '    let b = k >> 2u; if (b != block) { normals = philox_normals(vec4<u32>(i, b, 0u, tick), key); block = b; }',
      '    var prev = 0.0; if (k >= M) { prev = SCR[base + D + k - M] - AUX[mean + k - M]; }',
      '    z = AUX[mean + k] + gamma * prev + sigma * normals[k & 3u];',
      '  }',
      '  SCR[base + D + k] = z;',
      '}',
    ]),
    '/** The evaluated proposals become the particles, in the other set. */',
    ...perParticle('store_prepared', ['let r = record(1u - current(), i);', copyScratchToRecord]),
    '',
    '/** The set just written holds the particles now (one invocation, after the writers finished). */',
    ...single('flip', [`SC[${SC.current}u] = f32(1u - current());`]),
    '',
    `var<workgroup> redA: array<f32, ${TSMC_REDUCE}>;`,
    `var<workgroup> redB: array<f32, ${TSMC_REDUCE}>;`,
    'var<workgroup> wgPair: vec2<f32>;',
    '/** Sums over the workgroup of a and b, in a fixed order (deterministic), returned uniformly. */',
    'fn workgroup_sums(lid: u32, a: f32, b: f32) -> vec2<f32> {',
    '  redA[lid] = a; redB[lid] = b;',
    '  workgroupBarrier();',
    `  if (lid == 0u) { var sa = 0.0; var sb = 0.0; for (var j = 0u; j < ${TSMC_REDUCE}u; j = j + 1u) { sa = sa + redA[j]; sb = sb + redB[j]; } wgPair = vec2<f32>(sa, sb); }`,
    '  return workgroupUniformLoad(&wgPair);',
    '}',
    '/** ESS of the incremental weights exp(-(delta / lambda)(E - eMin)) over the valid particles. */',
    'fn ess_of(lid: u32, pset: u32, delta: f32, eMin: f32) -> f32 {',
    `  let lambda = ${hf(H.lambda)}; var a = 0.0; var b = 0.0;`,
    `  for (var i = lid; i < N; i = i + ${TSMC_REDUCE}u) { let e = energy_of(pset, i); if (e < NO_COST) { let w = exp(-(delta / lambda) * (e - eMin)); a = a + w; b = b + w * w; } }`,
    '  let s = workgroup_sums(lid, a, b);',
    '  return s.x * s.x / s.y;',
    '}',
    '',
    '/**',
    ' * Reweighting: the next beta by bisection so the ESS is rho N, log Z, the',
    ' * cumulative weights and the ancestors (systematic or multinomial), one workgroup.',
    ' */',
    `@compute @workgroup_size(${TSMC_REDUCE})`,
    'fn reweight(@builtin(local_invocation_index) lid: u32) {',
    `load_n(); let pset = current(); let beta = SC[${SC.beta}u]; let lambda = ${hf(H.lambda)};`,
    'var lo = NO_COST; var hi = -NO_COST; var bad = 0.0;',
    `for (var i = lid; i < N; i = i + ${TSMC_REDUCE}u) { let e = energy_of(pset, i); if (e < NO_COST) { lo = min(lo, e); hi = max(hi, e); } else { bad = bad + 1.0; } }`,
    'redA[lid] = lo; redB[lid] = hi;',
    'workgroupBarrier();',
    `if (lid == 0u) { var a = NO_COST; var b = -NO_COST; for (var j = 0u; j < ${TSMC_REDUCE}u; j = j + 1u) { a = min(a, redA[j]); b = max(b, redB[j]); } wgPair = vec2<f32>(a, b); }`,
    'let eRange = workgroupUniformLoad(&wgPair);',
    'let eMin = eRange.x;',
    'let badCount = workgroup_sums(lid, bad, 0.0).x;',
    `let wanted = ${hf(H.rho)} * f32(N);`,
    'let room = 1.0 - beta;',
    // the bisection always runs (its barriers need uniform control flow); its result counts only when all of 1 - beta is too much
    'let essRoom = ess_of(lid, pset, room, eMin);',
    'var a = 0.0; var b = room;',
    'for (var it = 0u; it < 40u; it = it + 1u) { let mid = 0.5 * (a + b); if (ess_of(lid, pset, mid, eMin) >= wanted) { a = mid; } else { b = mid; } }',
    'var next = beta + max(a, room * 1e-6);',
    'if (badCount >= f32(N) || essRoom >= wanted) { next = 1.0; }',
    'let delta = next - beta;',
    // the weights, cumulated per thread over a contiguous slice, then offset by the slices before
    `let chunk = (N + ${TSMC_REDUCE - 1}u) / ${TSMC_REDUCE}u; let first = min(N, lid * chunk); let last = min(N, first + chunk);`,
    'var partial = 0.0; var partial2 = 0.0;',
    'for (var i = first; i < last; i = i + 1u) {',
    '  let e = energy_of(pset, i); var w = 0.0;',
    '  if (e < NO_COST) { w = exp(-(delta / lambda) * (e - eMin)); }',
    '  partial = partial + w; partial2 = partial2 + w * w;',
    `  AUX[${aux('cum')} + i] = partial;`,
    '}',
    'redA[lid] = partial; redB[lid] = partial2;',
    'workgroupBarrier();',
    `if (lid == 0u) { var off = 0.0; var s2 = 0.0; for (var j = 0u; j < ${TSMC_REDUCE}u; j = j + 1u) { let c = redA[j]; redA[j] = off; off = off + c; s2 = s2 + redB[j]; } wgPair = vec2<f32>(off, s2); }`,
    'let totals = workgroupUniformLoad(&wgPair);',
    `for (var i = first; i < last; i = i + 1u) { AUX[${aux('cum')} + i] = AUX[${aux('cum')} + i] + redA[lid]; }`,
    'storageBarrier();',
    'workgroupBarrier();',
    `let level = u32(SC[${SC.level}u]); let key = vec2<u32>(H[${H.seed}u], ${TSMC_STREAM.resample}u); let tick = H[${H.tick}u];`,
    `let systematic = (H[${H.flags}u] & ${TSMC_FLAG.systematic}u) != 0u;`,
    'let u0 = philox_uniform(philox(vec4<u32>(0u, level, tick, 0u), key).x);',
    `for (var j = lid; j < N; j = j + ${TSMC_REDUCE}u) {`,
    '  var u = (u0 + f32(j)) / f32(N);',
    '  if (!systematic) { u = philox_uniform(philox(vec4<u32>(j, level, tick, 1u), key).x); }',
    '  let goal = u * totals.x;',
    '  var lo2 = 0u; var hi2 = N - 1u;',
    `  while (lo2 < hi2) { let mid = (lo2 + hi2) / 2u; if (AUX[${aux('cum')} + mid] > goal) { hi2 = mid; } else { lo2 = mid + 1u; } }`,
    `  AUX[${aux('ancestor')} + j] = f32(lo2);`,
    '}',
    'if (lid == 0u) {',
    `  SC[${SC.betaNext}u] = next;`,
    `  SC[${SC.logZ}u] = SC[${SC.logZ}u] - delta / lambda * eMin + log(totals.x) - log(f32(N));`,
    `  SC[${SC.outLevel + 2}u] = totals.x * totals.x / totals.y;`,
    `  SC[${SC.outLevel + 5}u] = badCount; SC[${SC.outLevel + 8}u] = eRange.x; SC[${SC.outLevel + 9}u] = eRange.y;`,
    `  SC[${SC.outLevel + 10}u] = select(0.0, 1.0, badCount >= f32(N));`,
    '}',
    '}',
    '',
    '/** Particle i of the other set becomes a copy of its ancestor. */',
    ...perParticle('resample', [
      `let pset = current(); let src = record(pset, u32(AUX[${aux('ancestor')} + i])); let dst = record(1u - pset, i);`,
      'for (var k = 0u; k < REC; k = k + 1u) { PS[dst + k] = PS[src + k]; }',
    ]),
    '',
    // an HMC move is a chain of short dispatches: begin, L x (kick and drift, evaluate, kick), end
    `fn kinetic_energy(base: u32) -> f32 { var s = 0.0; for (var k = 0u; k < D; k = k + 1u) { s = s + SCR[base + k] * SCR[base + k]; } return s; }`,
    `fn leapfrog_scale() -> f32 { let beta = SC[${SC.betaNext}u]; return select(beta / ${hf(H.lambda)}, 0.0, beta == 0.0); }`,
    '/** HMC at beta_next, begin: a fresh momentum, the particle copied to its scratch, its energy h0. */',
    ...perParticle('hmc_begin', [
      ...hmcContext,
      'var block = 0xffffffffu; var normals = vec4<f32>(0.0);',
      'for (var k = 0u; k < D; k = k + 1u) {',
      '  let b = k >> 2u; if (b != block) { normals = philox_normals(vec4<u32>(i, b, moveIndex, tick), key); block = b; }',
      '  SCR[base + k] = normals[k & 3u];',
      '}',
      copyRecordToScratch,
      'SCR[base + H0] = potential(SCR[base + E1], SCR[base + U1], beta) + 0.5 * kinetic_energy(base);',
    ]),
    '/** Leapfrog: half a kick with the current gradient, then a full drift. */',
    ...perParticle('kick_drift', [
      `let kE = leapfrog_scale(); let eps = SC[${SC.stepSize}u];`,
      `for (var k = 0u; k < D; k = k + 1u) { ${gradient} let p = SCR[base + k] - 0.5 * eps * g; SCR[base + k] = p; SCR[base + D + k] = SCR[base + D + k] + eps * p; }`,
    ]),
    '/** Leapfrog: half a kick with the gradient at the new position. */',
    ...perParticle('kick', [
      `let kE = leapfrog_scale(); let eps = SC[${SC.stepSize}u];`,
      `for (var k = 0u; k < D; k = k + 1u) { ${gradient} SCR[base + k] = SCR[base + k] - 0.5 * eps * g; }`,
    ]),
    '/** HMC end: the Metropolis test; an accepted proposal becomes the particle. */',
    ...perParticle('hmc_end', [
      ...hmcContext,
      'let h0 = SCR[base + H0];',
      'let h1 = potential(SCR[base + E1], SCR[base + U1], beta) + 0.5 * kinetic_energy(base);',
      'let proposalValid = valid(h1) && (beta == 0.0 || SCR[base + E1] < NO_COST);',
      'var a = 0.0;',
      'if (proposalValid) { a = exp(min(0.0, h0 - h1)); }',
      `AUX[${aux('acceptance')} + i] = a;`,
      `AUX[${aux('divergent')} + i] = select(0.0, 1.0, !proposalValid || h1 - h0 > 1000.0);`,
      'if (philox_uniform(philox(vec4<u32>(i, 0xffffffffu, moveIndex, tick), key).x) < a) {',
      copyScratchToRecord,
      '}',
    ]),
    '',
    '/** After a move: the mean acceptance, and the step size adapted towards the target acceptance (one workgroup). */',
    `@compute @workgroup_size(${TSMC_REDUCE})`,
    'fn adapt(@builtin(local_invocation_index) lid: u32) {',
    'load_n(); var a = 0.0; var dv = 0.0;',
    `for (var i = lid; i < N; i = i + ${TSMC_REDUCE}u) { a = a + AUX[${aux('acceptance')} + i]; dv = dv + AUX[${aux('divergent')} + i]; }`,
    'let s = workgroup_sums(lid, a, dv);',
    'if (lid == 0u) {',
    '  let mean = s.x / f32(N);',
    `  SC[${SC.acceptanceSum}u] = SC[${SC.acceptanceSum}u] + mean; SC[${SC.divergentSum}u] = SC[${SC.divergentSum}u] + s.y / f32(N);`,
    `  SC[${SC.moves}u] = SC[${SC.moves}u] + 1.0; SC[${SC.moveIndex}u] = SC[${SC.moveIndex}u] + 1.0;`,
    `  SC[${SC.outLevel + 4}u] = SC[${SC.stepSize}u];`,
    `  let wanted = ${hf(H.targetAcceptance)};`,
    `  if (wanted > 0.0) { SC[${SC.stepSize}u] = SC[${SC.stepSize}u] * exp(clamp(2.0 * (mean - wanted), -2.0, 1.0)); }`,
    '}',
    '}',
    '',
    '/** The level is done: beta moves on, and its figures go to the read-back. */',
    ...single('level_end', [
      `let moves = max(SC[${SC.moves}u], 1.0);`,
      `SC[${SC.beta}u] = SC[${SC.betaNext}u]; SC[${SC.level}u] = SC[${SC.level}u] + 1.0;`,
      `SC[${SC.outLevel}u] = SC[${SC.beta}u]; SC[${SC.outLevel + 1}u] = SC[${SC.logZ}u];`,
      `SC[${SC.outLevel + 3}u] = SC[${SC.acceptanceSum}u] / moves; SC[${SC.outLevel + 6}u] = SC[${SC.divergentSum}u] / moves;`,
      `if (SC[${SC.moves}u] == 0.0) { SC[${SC.outLevel + 4}u] = SC[${SC.stepSize}u]; }`,
      `SC[${SC.outLevel + 7}u] = SC[${SC.stepSize}u]; SC[${SC.outLevel + 11}u] = SC[${SC.level}u];`,
      `SC[${SC.acceptanceSum}u] = 0.0; SC[${SC.divergentSum}u] = 0.0; SC[${SC.moves}u] = 0.0;`,
    ]),
    '',
    // the plan: the lowest-energy particle, then (polishSteps > 0) projected Adam on its cost with the CPU polish's backoff,
    // as a chain: begin, P x (load, evaluate particle 0, Adam step), load, evaluate, end
    '/** The polish starts from the lowest-energy particle; the running best cost is SC.outCost. */',
    ...single('polish_begin', [
      `let pset = current(); let z = ${aux('adamZ')}; let m1 = ${aux('adamM1')}; let m2 = ${aux('adamM2')}; let bz = ${aux('adamBest')};`,
      'var bi = 0u; var be = energy_of(pset, 0u);',
      'for (var i = 1u; i < N; i = i + 1u) { let e = energy_of(pset, i); if (e < be) { be = e; bi = i; } }',
      'for (var k = 0u; k < D; k = k + 1u) { AUX[z + k] = PS[record(pset, bi) + k]; AUX[m1 + k] = 0.0; AUX[m2 + k] = 0.0; AUX[bz + k] = AUX[z + k]; }',
      `SC[${SC.polishStep}u] = 0.0; SC[${SC.polishRate}u] = ${hf(H.polishRate)}; SC[${SC.evalCount}u] = 1.0;`,
      `SC[${SC.outCost}u] = select(be, NO_COST, H[${H.polishSteps}u] > 0u);`,
    ]),
    '/** Adam\'s point into particle 0\'s scratch, to be evaluated. */',
    ...single('polish_load', [`for (var k = 0u; k < D; k = k + 1u) { SCR[D + k] = AUX[${aux('adamZ')} + k]; }`]),
    '/** One Adam step with backoff: a step that raised the cost is undone and the rate halved (regrowing 1.2x per good step). */',
    ...single('adam_step', [
      `let z = ${aux('adamZ')}; let m1 = ${aux('adamM1')}; let m2 = ${aux('adamM2')}; let bz = ${aux('adamBest')}; let bg = ${aux('adamBestGrad')};`,
      `let lr = ${hf(H.polishRate)}; var rate = SC[${SC.polishRate}u]; let t = SC[${SC.polishStep}u] + 1.0;`,
      'let e = SCR[E1];',
      `if (e < SC[${SC.outCost}u]) { SC[${SC.outCost}u] = e; rate = min(lr, 1.2 * rate); for (var k = 0u; k < D; k = k + 1u) { AUX[bz + k] = AUX[z + k]; AUX[bg + k] = SCR[2u * D + k]; } }`,
      'else { rate = 0.5 * rate; for (var k = 0u; k < D; k = k + 1u) { AUX[z + k] = AUX[bz + k]; SCR[2u * D + k] = AUX[bg + k]; } }',
      'let c1 = 1.0 - pow(0.9, t); let c2 = 1.0 - pow(0.999, t);',
      'for (var k = 0u; k < D; k = k + 1u) {',
      '  let g = SCR[2u * D + k];',
      '  AUX[m1 + k] = 0.9 * AUX[m1 + k] + 0.1 * g; AUX[m2 + k] = 0.999 * AUX[m2 + k] + 0.001 * g * g;',
      '  var v = AUX[z + k] - rate * (AUX[m1 + k] / c1) / (sqrt(AUX[m2 + k] / c2) + 1e-8);',
      '  if (bounded(k)) { v = clamp(v, -1.0, 1.0); }',
      '  AUX[z + k] = v;',
      '}',
      `SC[${SC.polishRate}u] = rate; SC[${SC.polishStep}u] = t;`,
    ]),
    '/** The plan: the best point (the last Adam point counts too), kept as the next tick\'s prior mean before shifting. */',
    ...single('polish_end', [
      `let bz = ${aux('adamBest')};`,
      `if (H[${H.polishSteps}u] > 0u && SCR[E1] < SC[${SC.outCost}u]) { SC[${SC.outCost}u] = SCR[E1]; for (var k = 0u; k < D; k = k + 1u) { AUX[bz + k] = AUX[${aux('adamZ')} + k]; } }`,
      `for (var k = 0u; k < D; k = k + 1u) { AUX[${aux('best')} + k] = AUX[bz + k]; SC[${SC.outPlan}u + k] = AUX[bz + k]; }`,
    ]),
  ];
  return L.filter((l) => l.trim() !== '').join('\n');
}
