/**
 * A relay worker process: it receives a client socket and its backend socket from the main
 * process (decided there: admission, balancing, the backend's slot) and moves bytes between them
 * until both directions end, then reports the counts. Running the byte pumping in a few processes
 * spreads layer 4 traffic over the machine's cores while every decision stays in one place.
 *
 * Messages from the parent: `{ t: 'client', id, idleMs, toBackend }` with the client socket,
 * `{ t: 'backend', id, toClient }` with the backend socket, `{ t: 'terminate', id, why }`,
 * `{ t: 'terminate-all', why }`. To the parent: `{ t: 'started', id }` once both sockets are here
 * (the parent then lets go of its copies), `{ t: 'ended', id, bytesIn, bytesOut, end }`.
 */
import type { Socket } from 'node:net';

interface Pending {
  client?: Socket;
  backend?: Socket;
  idleMs: number;
  toBackend: Buffer[];
  toClient: Buffer[];
  terminated: boolean;
}

interface Message {
  t: 'client' | 'backend' | 'terminate' | 'terminate-all';
  id: number;
  why?: string;
  idleMs?: number;
  toBackend?: Buffer[];
  toClient?: Buffer[];
}

const pending = new Map<number, Pending>();
const live = new Map<number, (why: string) => void>();

function send(message: Record<string, unknown>): void {
  if (process.connected) process.send!(message);
}

/** Both sockets are here: bytes flow both ways with backpressure and half-close. */
function start(id: number, p: Pending): void {
  const client = p.client!;
  const backend = p.backend!;
  // A socket received from another process is made without allowHalfOpen: set it, so an end from
  // one side is passed on while the other direction keeps flowing.
  client.allowHalfOpen = true;
  backend.allowHalfOpen = true;
  client.setNoDelay(true);
  backend.setNoDelay(true);
  let end: string | undefined;
  const note = (why: string) => (end ??= why);
  const terminate = (why = 'terminated') => {
    note(why);
    backend.destroy();
    client.destroy();
  };
  live.set(id, terminate);
  let open = 2;
  const closed = () => {
    if (--open > 0) return;
    live.delete(id);
    clearInterval(timer);
    send({ t: 'ended', id, bytesIn: client.bytesRead, bytesOut: client.bytesWritten, end: end ?? 'closed' });
  };
  client.once('close', () => {
    backend.destroy();
    closed();
  });
  backend.once('close', () => {
    client.destroySoon();
    closed();
  });
  client.on('error', () => {
    note('client_error');
    client.destroy();
  });
  backend.on('error', () => {
    note('backend_error');
    client.destroy();
  });
  client.once('end', () => note('client_closed'));
  backend.once('end', () => note('backend_closed'));
  for (const b of p.toBackend) backend.write(b);
  for (const b of p.toClient) client.write(b);
  client.pipe(backend);
  backend.pipe(client);
  send({ t: 'started', id });
  // The tunnel timeout: no byte either way for idleMs. Byte counts are looked at a few times per
  // period instead of re-arming a socket timer on every chunk.
  let moved = client.bytesRead + client.bytesWritten;
  let quietSince = Date.now();
  const timer = setInterval(
    () => {
      const now = client.bytesRead + client.bytesWritten;
      if (now !== moved) {
        moved = now;
        quietSince = Date.now();
      } else if (Date.now() - quietSince >= p.idleMs) {
        note('idle_timeout');
        terminate();
      }
    },
    Math.max(Math.floor(p.idleMs / 4), 25),
  );
  timer.unref();
  if (p.terminated) terminate();
}

process.on('message', (m: Message, socket?: Socket) => {
  if (m.t === 'terminate-all') {
    for (const kill of live.values()) kill(m.why ?? 'terminated');
    return;
  }
  if (m.t === 'terminate') {
    const kill = live.get(m.id);
    if (kill) kill(m.why ?? 'terminated');
    else {
      const p = pending.get(m.id);
      if (p) {
        p.terminated = true;
        p.client?.destroy();
        p.backend?.destroy();
      }
    }
    return;
  }
  let p = pending.get(m.id);
  if (!p) pending.set(m.id, (p = { idleMs: 60_000, toBackend: [], toClient: [], terminated: false }));
  if (m.t === 'client') {
    p.client = socket;
    p.idleMs = m.idleMs ?? p.idleMs;
    p.toBackend = m.toBackend ?? [];
  } else {
    p.backend = socket;
    p.toClient = m.toClient ?? [];
  }
  if (p.client && p.backend) {
    pending.delete(m.id);
    if (p.terminated) {
      p.client.destroy();
      p.backend.destroy();
      send({ t: 'ended', id: m.id, bytesIn: 0, bytesOut: 0, end: 'terminated' });
      return;
    }
    start(m.id, p);
  }
});

// The main process went away: nothing here can be accounted for any more.
process.on('disconnect', () => {
  for (const kill of live.values()) kill('shutdown');
  process.exit(0);
});
