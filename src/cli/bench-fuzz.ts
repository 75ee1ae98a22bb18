import { FUZZ_TARGETS } from '../fuzz/targets.js';
import { Command, JSON_OPTION, optionalInteger, printJson, stringOpt, table } from './command.js';
import { progressBar } from './progress.js';
import { InputError } from '../input-error.js';

export const benchFuzzCommand: Command = {
  name: 'bench fuzz',
  summary: 'Property-based fuzzing of every input surface (state and goal messages, live parameters, parameter files, CLI arguments, controls files, simulator commands); exits 1 with the smallest failing input when a property fails.',
  usage: 'bench fuzz [--runs N] [--seed K] [--target NAME] [--json]',
  options: {
    runs: { type: 'string', description: 'generated cases per target (default 10000)', valueName: 'N' },
    seed: { type: 'string', description: 'seed of the generator (default 0)', valueName: 'K' },
    target: { type: 'string', description: `one target: ${FUZZ_TARGETS.map((t) => t.name).join(', ')} (default all)`, valueName: 'NAME' },
    json: JSON_OPTION,
  },
  async run(values) {
    const runs = optionalInteger(values, 'runs', 10000, 1);
    if (runs > 10_000_000) throw new InputError(`--runs must be <= 10000000, got ${runs}`);
    const seed = optionalInteger(values, 'seed', 0, 0);
    const only = stringOpt(values, 'target');
    const targets = only === undefined ? FUZZ_TARGETS : FUZZ_TARGETS.filter((t) => t.name === only);
    if (targets.length === 0) throw new InputError(`unknown --target '${only}' (known: ${FUZZ_TARGETS.map((t) => t.name).join(', ')})`);
    const bar = progressBar('fuzz', !values.json);
    const reports = [];
    for (const [i, target] of targets.entries()) {
      bar.update(i / targets.length, target.name);
      reports.push(await target.run(runs, seed));
    }
    bar.done();
    const failed = reports.filter((r) => r.failed);
    if (values.json) printJson({ seed, reports });
    else {
      console.log(table(reports.map((r) => [r.target, r.runs, r.failed ? 'FAILED' : 'ok', r.wallS, r.note ?? '']), ['target', 'cases', 'property', 'wall [s]', 'note']));
      for (const r of failed) console.log(`\n${r.target}: ${r.error}\n  smallest failing input: ${r.counterexample}`);
      console.log(`\n${failed.length ? `${failed.length} target(s) failed` : 'no property failures'} (seed ${seed}, ${runs} cases per target)`);
    }
    if (failed.length) process.exitCode = 1;
  },
};
