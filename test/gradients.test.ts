import assert from 'node:assert/strict';
import { MODELS } from '../src/models/index.js';
import { cpu, model, testControls } from './helpers.js';

/** Five-point central difference: truncation O(h^4), so h can be large enough to avoid round-off. */
function centralDifference(f: (d: number) => number, h: number): number {
  return (-f(2 * h) + 8 * f(h) - 8 * f(-h) + f(-2 * h)) / (12 * h);
}

describe('exact rollout gradients (adjoint) vs finite differences of the f64 cost', () => {
  for (const name of MODELS.keys()) {
    it(`${name}: every coordinate of dJ/dU to 1e-6 relative`, () => {
      const m = model(name);
      const backend = cpu(m);
      const U = testControls(m, 1, 7);
      const { cost, grad } = backend.costGradSync({ controls: U });
      assert.equal(cost[0], backend.costSync({ controls: U })[0], 'cost kernel and gradient kernel agree');
      const scale = Math.max(...grad.map(Math.abs));
      assert.ok(scale > 0, 'gradient is not identically zero');
      let worst = 0;
      // Every coordinate for short horizons; an even spread of 60 for long ones keeps the test quick.
      const stride = Math.max(1, Math.floor(U.length / 60));
      for (let i = 0; i < U.length; i += stride) {
        const fd = centralDifference((d) => {
          const V = U.slice();
          V[i] += d;
          return backend.costSync({ controls: V })[0];
        }, 1e-4 * Math.max(1, Math.abs(U[i])));
        worst = Math.max(worst, Math.abs(fd - grad[i]) / Math.max(Math.abs(grad[i]), 1e-3 * scale));
      }
      assert.ok(worst < 1e-6, `worst relative error ${worst.toExponential(2)}`);
    });
  }

  it('acrobot with its MPC cost terms on (energy, LQR terminal): dJ/dU to 1e-6 relative', () => {
    const m = model('acrobot', { horizon: 24, wEnergy: 10, terminalLqr: 1 });
    const backend = cpu(m);
    const U = testControls(m, 1, 11);
    const x0 = [2.9, 0.2, 0.5, -0.3];
    const { grad } = backend.costGradSync({ controls: U, x0 });
    const plain = cpu(model('acrobot', { horizon: 24 })).costSync({ controls: U, x0 })[0];
    assert.ok(backend.costSync({ controls: U, x0 })[0] > plain, 'the extra terms add cost');
    const scale = Math.max(...grad.map(Math.abs));
    let worst = 0;
    for (let i = 0; i < U.length; i++) {
      const fd = centralDifference((d) => {
        const V = U.slice();
        V[i] += d;
        return backend.costSync({ controls: V, x0 })[0];
      }, 1e-4);
      worst = Math.max(worst, Math.abs(fd - grad[i]) / Math.max(Math.abs(grad[i]), 1e-3 * scale));
    }
    assert.ok(worst < 1e-6, `worst relative error ${worst.toExponential(2)}`);
  });

  it('respects the previous control in smoothness costs (pusher-slider edge switching)', () => {
    const m = model('pusher-slider');
    const backend = cpu(m);
    const U = testControls(m, 1, 3);
    const a = backend.costSync({ controls: U, uPrev: [1.3, 0, 0, 0] })[0];
    const b = backend.costSync({ controls: U, uPrev: [3.7, 0, 0, 0] })[0];
    assert.ok(b > a, 'switching edge away from the last applied one costs more');
  });
});
