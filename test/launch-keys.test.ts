import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { nodeKeyMatches } from '../ros/src/overrides.js';

/*
 * The launch files read the controller's rateHz from the parameter file by
 * the same key rule the nodes apply (ros/src/overrides.ts), written again in
 * Python (launch/_node_keys.py, no ROS imports): the two must agree.
 */

const LAUNCH = fileURLToPath(new URL('../../launch/', import.meta.url));
const NAME = 'tempered_mpc_controller';
const KEYS = ['/**', '/*', NAME, `/${NAME}`, `/tempered_mpc/${NAME}`, `tempered_mpc/${NAME}`, `/*/${NAME}`, `/**/${NAME}`, '/**/other', 'tempered_mpc_simulator', `/a/b/${NAME}`, `/*/*/${NAME}`];
const NAMESPACES = ['', '/', '/tempered_mpc', 'tempered_mpc', '/a/b', '/other'];

describe('launch files: the parameter-file key rule in Python', () => {
  const python = spawnSync('python3', ['--version'], { encoding: 'utf8' });
  if (python.status !== 0) {
    it.skip('agrees with ros/src/overrides.ts (python3 is not installed)');
    return;
  }
  it('launch/_node_keys.py gives the same answer as ros/src/overrides.ts for every key and namespace', () => {
    const cases = KEYS.flatMap((key) => NAMESPACES.map((ns) => [key, ns]));
    const script = `import json, sys\nfrom _node_keys import key_matches\nprint(json.dumps([key_matches(k, ns, ${JSON.stringify(NAME)}) for k, ns in json.load(sys.stdin)]))`;
    const run = spawnSync('python3', ['-c', script], { cwd: LAUNCH, input: JSON.stringify(cases), encoding: 'utf8', env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' } });
    assert.equal(run.status, 0, run.stderr);
    const fromPython = JSON.parse(run.stdout) as boolean[];
    const mismatches = cases.filter(([key, ns], i) => fromPython[i] !== nodeKeyMatches(key, ns, NAME));
    assert.deepEqual(mismatches, []);
    assert.ok(fromPython.some(Boolean) && fromPython.some((m) => !m), 'the table has keys that match and keys that do not');
  });
});
