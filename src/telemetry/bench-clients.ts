import foxglove from '@foxglove/ws-protocol';
import type { Channel } from '@foxglove/ws-protocol';
import { WebSocket } from 'ws';

// Telemetry clients for `bench telemetry`, in a process of their own: N Foxglove clients subscribed to
// every channel, optionally one more that subscribes and then stops reading (a stalled client).
// Usage: node bench-clients.js URL N [stalled]. Prints the messages received per client on SIGTERM.

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

process.on('SIGTERM', () => {
  process.stdout.write(`${JSON.stringify({ received })}\n`);
  process.exit(0);
});
