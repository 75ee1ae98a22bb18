import { loadSystem } from '../models/index.js';
import { InputError } from '../input-error.js';
import { LearnedPrior } from '../learned/runtime.js';
import { actEpisode, acting } from '../prior/acting.js';
import { ActorChannel } from '../prior/remote.js';
import { Command, JSON_OPTION, parseInteger, parseNumber, printJson, requireString } from './command.js';

/** Where a worker tells the actors it runs which Redis their learner uses (a URL may hold a password: not on the command line). */
export const QUEUE_ENV = 'TEMPERED_MPC_QUEUE';

/** The actor's options, checked. */
function actorOptions(values: Record<string, unknown>) {
  const run = requireString(values, 'run');
  if (!/^[0-9a-f]{1,64}$/.test(run)) throw new InputError(`--run must be a training run's id (hex), got '${run.slice(0, 40)}'`);
  const episode = parseInteger('--episode', requireString(values, 'episode'), 0);
  const start = requireString(values, 'start').split(',').map((t, i) => parseNumber(`--start[${i}]`, t));
  return { run, episode, start };
}

export const trainActorCommand: Command = {
  name: 'train-actor',
  summary: 'One episode of `train-prior --queue`, acted here with the learner\'s networks (a worker runs it; it reads the queue\'s URL from TEMPERED_MPC_QUEUE).',
  usage: 'train-actor --run ID --episode E --start a,b,... [--out DIR] [--json]',
  options: {
    run: { type: 'string', description: 'the training run (the learner names it)', valueName: 'ID' },
    episode: { type: 'string', description: 'the episode\'s number (its random streams come from it)', valueName: 'E' },
    start: { type: 'string', description: 'the episode\'s initial physical state (the learner draws it)', valueName: 'a,b,...' },
    out: { type: 'string', description: 'unused: the worker gives every job a folder', valueName: 'DIR' },
    json: JSON_OPTION,
  },
  check(values) {
    actorOptions(values);
  },
  async run(values) {
    const { run, episode, start } = actorOptions(values);
    const url = process.env[QUEUE_ENV];
    if (!url) throw new InputError(`train-actor is run by \`tempered-mpc worker\` for \`train-prior --queue\`: ${QUEUE_ENV} names no queue`);
    const { channel, config } = await ActorChannel.open(url, run, episode);
    try {
      await loadSystem(config.run.system);
      const first = await channel.snapshotAfter(-1);
      if (!first) throw new Error(`training run '${run}' has published no networks`);
      let have = first.version;
      const a = await acting(config.run, config.train, LearnedPrior.fromNetworks(first.meta, first.networks));
      try {
        await actEpisode(a, config.run, episode, start, () => have, (t) => channel.send(t), async () => {
          // plan only with at most maxLag of this episode's steps not yet learned from, with the newest networks
          await channel.awaitLearner(config.maxLag);
          const newer = await channel.snapshotAfter(have);
          if (newer) {
            have = newer.version;
            a.guide.prior = LearnedPrior.fromNetworks(newer.meta, newer.networks);
          }
        });
      } finally {
        a.dispose();
      }
      if (values.json) printJson({ episode, ticks: a.ticks, version: have });
      else console.log(`episode ${episode + 1}: ${a.ticks} steps acted, last with networks of update ${have}`);
    } finally {
      channel.close();
    }
  },
};
