import assert from 'node:assert/strict';
import protobuf from 'protobufjs';
import descriptor from 'protobufjs/ext/descriptor/index.js';
import { TYPES } from '../src/interfaces/definitions.js';
import { protobufSchema } from '../src/interfaces/protobuf.js';
import { assemble, resolveRunParams } from '../src/run/setup.js';
import { StateCodec } from '../src/interfaces/messages.js';
import { model } from './helpers.js';

describe('protobuf from the .msg definitions', () => {
  it('round-trips every message the nodes and the log carry, smaller than JSON; the FileDescriptorSet stands on its own', async () => {
    const params = resolveRunParams('pendulum', { planner: 'mppi', threads: 1, 'mppi.samples': 64, 'mppi.iterations': 2, estimator: 'ekf' });
    const { session } = await assemble(params, { lockstep: true });
    try {
      session.onStateMessage(session.codec.encode([0.3, -0.1], 0), 0);
      const tick = await session.tick(0);
      const slider = new StateCodec(model('pusher-slider'), []);
      const messages: Record<string, object> = {
        [TYPES.plan]: session.planMessage(tick, 'world'),
        [TYPES.status]: session.statusMessage(tick, 'world'),
        [TYPES.estimate]: session.estimateMessage('world')!,
        [TYPES.jointState]: session.codec.encode([0.3, -0.1], 12.5),
        [TYPES.poseStamped]: slider.encode([0.1, 0.2, 0.3], 1.25),
        [TYPES.command]: session.commandMessage(tick),
        [TYPES.clock]: { clock: { sec: 3, nanosec: 5e8 } },
      };
      const sizes: string[] = [];
      for (const [type, message] of Object.entries(messages)) {
        const schema = protobufSchema(type);
        const bytes = schema.encode(message);
        assert.deepEqual(schema.decode(bytes), JSON.parse(JSON.stringify(message, (_k, v) => (v instanceof Float64Array ? Array.from(v) : v)), (_k, v) => (v === null ? NaN : v)), type);
        const json = Buffer.byteLength(JSON.stringify(message));
        sizes.push(`${type}: ${bytes.length} B protobuf, ${json} B JSON`);
        assert.ok(bytes.length < json, `${type}: protobuf ${bytes.length} B against JSON ${json} B`);
        // what Foxglove does with the schema: a root from the descriptor set alone decodes the bytes
        const root = (protobuf.Root as unknown as { fromDescriptor(d: unknown): protobuf.Root }).fromDescriptor(descriptor.FileDescriptorSet.decode(schema.fileDescriptorSet));
        const again = root.lookupType(schema.name).decode(bytes);
        assert.ok(again, type);
      }
      console.log(`      ${sizes.join('\n      ')}`);
      assert.equal(protobufSchema(TYPES.plan).name, 'tempered_mpc_msgs.msg.Plan');
    } finally {
      session.dispose();
    }
  });

  it('an unknown type is named in the error', () => {
    assert.throws(() => protobufSchema('no_such_pkg/msg/Thing'), /unknown message type 'no_such_pkg\/msg\/Thing'/);
  });
});
