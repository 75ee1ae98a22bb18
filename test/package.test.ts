import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/*
 * The package as a user gets it: `npm pack` of this checkout (its built
 * dist), installed into an empty folder with npm (the dependencies from the
 * registry, or npm's cache as CI's `npm ci` left it), then imported from
 * JavaScript, type-checked from TypeScript against the shipped declarations,
 * and its CLI run on a model module of that folder.
 */

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const TSC = join(REPO, 'node_modules', 'typescript', 'bin', 'tsc');

function sh(command: string, args: string[], cwd: string, timeoutMs = 300000) {
  const r = spawnSync(command, args, { cwd, encoding: 'utf8', timeout: timeoutMs });
  assert.equal(r.status, 0, `${command} ${args.join(' ')} (exit ${r.status}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

const POINT_MASS_TS = `import { defineModel, num, rk4, mul, type ModelDefinition } from 'tempered-mpc';
const model: ModelDefinition = defineModel({
  name: 'point', summary: 'a point mass', stateNames: ['p', 'v'], physicalUnits: ['m', 'm/s'], controlNames: ['u'], controlUnits: ['N'],
  params: { dtS: num(0.1, 'step [s]'), horizon: num(10, 'steps', { integer: true }) },
  x0: [0, 0], goal: [1, 0], controlLimits: { lower: [-1], upper: [1] },
  step: (x, [u], _w, p) => rk4(([, v]) => [v, u], x, p.dtS),
  stageCost: (_x, [u]) => mul(u, u),
  terminalCost: (x) => mul(x[0], x[0]),
});
// the declarations must catch this (never called: it would be refused at run time too)
export function misuse() {
  // @ts-expect-error stateNames must be a list of names
  return defineModel({ ...model, stateNames: 3 });
}
export default model;
`;

describe('npm pack: the package installs in an empty folder and imports with its types', function () {
  this.timeout(600000);
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'tempered-mpc-pack-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('packs, installs, imports, type-checks, and its CLI runs a model module of the folder', () => {
    const packed = join(dir, 'packed');
    mkdirSync(packed);
    // the tests run on a built checkout: pack what is built (prepare would build it again)
    sh('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', packed], REPO);
    const [tarball] = readdirSync(packed);
    assert.match(tarball, /^tempered-mpc-\d+\.\d+\.\d+\.tgz$/);
    const app = join(dir, 'app');
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), '{ "name": "app", "private": true, "type": "module" }\n');
    sh('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--omit=optional', join(packed, tarball)], app);

    writeFileSync(join(app, 'check.mjs'), "import { defineModel, MODELS, num } from 'tempered-mpc';\nconsole.log(JSON.stringify({ defineModel: typeof defineModel, num: typeof num, models: [...MODELS.keys()] }));\n");
    const imported = JSON.parse(sh(process.execPath, ['check.mjs'], app));
    assert.deepEqual(imported, { defineModel: 'function', num: 'function', models: ['pendulum', 'acrobot', 'cart-double-pendulum', 'pusher-slider', 'double-integrator', 'shekel'] });

    writeFileSync(join(app, 'point.ts'), POINT_MASS_TS);
    writeFileSync(join(app, 'tsconfig.json'), JSON.stringify({
      compilerOptions: { module: 'node16', moduleResolution: 'node16', target: 'es2022', strict: true, outDir: 'built', skipLibCheck: false, types: [] },
      files: ['point.ts'],
    }));
    sh(process.execPath, [TSC, '-p', '.'], app);

    copyFileSync(join(REPO, 'docs', 'your-robot', 'cartpole.mjs'), join(app, 'cartpole.mjs'));
    const bin = join(app, 'node_modules', '.bin', 'tempered-mpc');
    for (const system of ['./cartpole.mjs', './built/point.js']) {
      const rolled = JSON.parse(sh(bin, ['rollout', '--system', system, '--json'], app));
      assert.ok(Number.isFinite(rolled.cost), `${system}: ${rolled.cost}`);
    }
  });
});
