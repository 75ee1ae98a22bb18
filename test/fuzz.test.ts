import assert from 'node:assert/strict';
import { FUZZ_TARGETS } from '../src/fuzz/targets.js';

// Seeded, a few hundred cases per surface; `tempered-mpc bench fuzz` runs 10,000+ each.
describe('fuzzing every input surface (fast-check, seeded)', () => {
  for (const target of FUZZ_TARGETS) {
    it(`${target.name}: ${target.doc}`, async () => {
      const report = await target.run(300, 42);
      assert.equal(report.failed, false, `${report.error}\ncounterexample: ${report.counterexample}`);
      assert.equal(report.runs, 300);
    });
  }
});
