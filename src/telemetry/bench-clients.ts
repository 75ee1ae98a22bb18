import foxglove from '@foxglove/ws-protocol';
import type { Channel } from '@foxglove/ws-protocol';
import { WebSocket } from 'ws';

// Telemetry clients for `bench telemetry`, in a process of their own: N Foxglove clients subscribed to
// every channel, optionally one more that subscribes and then stops reading (a stalled client), or one
// that sends what the first-hour review attacked with (hostile), every 200 ms until it is stopped.
// Usage: node bench-clients.js URL N [stalled|hostile]. Prints the messages received per client on SIGTERM.

const { FoxgloveClient } = foxglove;
const [url, countText, stalled] = process.argv.slice(2);
const received: number[] = [];

for (let i = 0; i < Number(countText); i++) {
  received.push(0);
  const client = new FoxgloveClient({ ws: new WebSocket(url, [FoxgloveClient.SUPPORTED_SUBPROTOCOL]) as never });
  client.on('advertise', (channels: Channel[]) => {
    for (const c of channels) client.subscribe(c.id);
  });
  client.on('message', () => received[i]++);
}

if (stalled === 'stalled') {
  const ws = new WebSocket(url, [FoxgloveClient.SUPPORTED_SUBPROTOCOL]);
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    if (isBinary) return;
    const msg = JSON.parse(data.toString()) as { op: string; channels?: Channel[] };
    if (msg.op !== 'advertise') return;
    ws.send(JSON.stringify({ op: 'subscribe', subscriptions: msg.channels!.map((c, k) => ({ id: k, channelId: c.id })) }));
    // from now on nothing is read: the server's queue for this client can only grow
    (ws as unknown as { _socket: { pause(): void } })._socket.pause();
  });
}

/** Requests the hostile client sent, by kind, and the HTTP answers it got. */
const hostile: Record<string, number> = {};

if (stalled === 'hostile') {
  const http = url.replace(/^ws/, 'http');
  const count = (kind: string) => (hostile[kind] = (hostile[kind] ?? 0) + 1);
  const patch = (body: string, headers: Record<string, string> = {}) => fetch(`${http}/params`, { method: 'PATCH', headers: { 'content-type': 'application/json', ...headers }, body })
    .then((r) => count(`HTTP ${r.status}`), () => count('HTTP failed'));
  const hugeKey = JSON.stringify({ [`x${'k'.repeat(60_000)}`]: 1 });
  const manyKeys = JSON.stringify(Object.fromEntries(Array.from({ length: 3000 }, (_, i) => [`key${i}`, i])));
  const subscribeMany = JSON.stringify({ op: 'subscribe', subscriptions: Array.from({ length: 100_000 }, (_, i) => ({ id: i, channelId: i % 7 })) }).slice(0, 60_000).replace(/,\{[^}]*$/, ']}');
  let ws: WebSocket | undefined;
  const socket = () => {
    if (!ws || ws.readyState > WebSocket.OPEN) {
      ws = new WebSocket(url, [FoxgloveClient.SUPPORTED_SUBPROTOCOL]);
      ws.on('error', () => count('ws error'));
    }
    return ws;
  };
  const send = (text: string, kind: string) => {
    const w = socket();
    if (w.readyState === WebSocket.OPEN) {
      w.send(text);
      count(kind);
    }
  };
  setInterval(() => {
    void patch(hugeKey);
    void patch(manyKeys);
    void patch('{"mppi.samples": "1024", "budgetMs": ');
    void patch(JSON.stringify({ 'mppi.temperature': 0.02 }), { origin: 'http://evil.example' });
    void fetch(`${http}/sim/pause`, { method: 'POST', headers: { origin: 'http://evil.example' } }).then((r) => count(`HTTP ${r.status}`), () => count('HTTP failed'));
    send(subscribeMany, 'ws subscribe 100k');
    send(JSON.stringify({ op: 'setParameters', id: 'h', parameters: [{ name: 'mppi.samples', value: '512' }, { name: 'k'.repeat(50_000), value: 1 }] }), 'ws setParameters');
    send('{ not json', 'ws garbage');
    // past the 64 kB frame cap: the server closes this connection, the next round opens another
    send('x'.repeat(70_000), 'ws oversized frame');
  }, 200);
}

process.on('SIGTERM', () => {
  process.stdout.write(`${JSON.stringify({ received, hostile })}\n`);
  process.exit(0);
});
