/** TCP: the backend accepts a connection. */
import { connect } from 'node:net';
import type { Probe } from '../probe.ts';

export const tcpProbe: Probe = (target, _check, signal) =>
  new Promise((resolve) => {
    const socket = connect({ host: target.host, port: target.port, signal });
    socket.once('connect', () => {
      socket.destroy();
      resolve({ ok: true });
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      socket.destroy();
      resolve({ ok: false, error: err.name === 'AbortError' ? 'timed out' : `connect ${err.code ?? err.message}` });
    });
  });
