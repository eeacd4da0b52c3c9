/**
 * The socket under the conversation probes (Redis, PostgreSQL, MySQL, LDAP). `read(n)` waits for
 * exactly n bytes, so each probe reads top to bottom like its protocol's spec instead of as a
 * state machine. Every way a conversation can end early — refused, reset, closed by the server,
 * the check's signal aborting — makes the next read throw a ProbeFailure whose message is what an
 * operator reads in the API; `converse` turns it into a failed ProbeResult, so a probe never rejects.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import type { HealthCheck } from '../../model/health-check.ts';
import type { ProbeResult, ProbeTarget } from '../probe.ts';

/** A conversation ended: the message is the probe's `error`. */
export class ProbeFailure extends Error {}

/** A server reply longer than this is not the short answer a health probe waits for. */
const MAX_BUFFERED = 64 * 1024;

export class Wire {
  #socket: Socket;
  #buffer: Buffer = Buffer.alloc(0);
  #failure: string | undefined;
  #wake: (() => void) | undefined;
  #phase: 'connect' | 'tls' | 'open' = 'connect';
  #politelyEnded = false;
  readonly #signal: AbortSignal;
  readonly #onAbort = () => this.#fail('timed out');

  constructor(target: ProbeTarget, signal: AbortSignal, tls?: ConnectionOptions) {
    this.#signal = signal;
    this.#socket = tls ? tlsConnect({ host: target.host, port: target.port, ...tls }) : netConnect({ host: target.host, port: target.port });
    // A direct-TLS socket is TCP-connected before it is secure: errors in between are TLS's.
    this.#socket.once('connect', () => (this.#phase = tls ? 'tls' : 'open'));
    if (tls) this.#socket.once('secureConnect', () => (this.#phase = 'open'));
    this.#listen(this.#socket);
    if (signal.aborted) this.#onAbort();
    else signal.addEventListener('abort', this.#onAbort, { once: true });
  }

  #listen(socket: Socket): void {
    socket.on('data', this.#onData);
    socket.on('error', (err: NodeJS.ErrnoException) => {
      const what = err.code ?? err.message;
      this.#fail(this.#phase === 'connect' ? `connect ${what}` : this.#phase === 'tls' ? `tls ${what}` : what);
    });
    socket.once('close', () => {
      this.#fail('connection closed by server');
      this.#signal.removeEventListener('abort', this.#onAbort);
    });
  }

  readonly #onData = (chunk: Buffer) => {
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
    if (this.#buffer.length > MAX_BUFFERED) this.#fail('reply too long');
    this.#wakeReader();
  };

  #wakeReader(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  /** The first reason wins: a reset after 'timed out' must not hide the timeout. */
  #fail(reason: string): void {
    this.#failure ??= reason;
    this.#socket.destroy();
    this.#wakeReader();
  }

  /** Bytes that arrived before the server closed are still readable; then the failure is thrown. */
  async #until(ready: () => boolean): Promise<void> {
    while (!ready()) {
      if (this.#failure !== undefined) throw new ProbeFailure(this.#failure);
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
  }

  /** Exactly `n` bytes. */
  async read(n: number): Promise<Buffer> {
    await this.#until(() => this.#buffer.length >= n);
    const out = this.#buffer.subarray(0, n);
    this.#buffer = this.#buffer.subarray(n);
    return out;
  }

  /** One line ending in CRLF, without it; at most `max` bytes. */
  async readLine(max: number): Promise<string> {
    await this.#until(() => this.#buffer.indexOf('\r\n') >= 0 || this.#buffer.length > max);
    const end = this.#buffer.indexOf('\r\n');
    if (end < 0 || end > max) throw new ProbeFailure(`unexpected reply ${quote(this.#buffer)}`);
    const line = this.#buffer.subarray(0, end).toString('utf8');
    this.#buffer = this.#buffer.subarray(end + 2);
    return line;
  }

  write(bytes: Uint8Array): void {
    if (this.#failure === undefined) this.#socket.write(bytes);
  }

  /**
   * Continues over TLS on the same connection (PostgreSQL's SSLRequest, MySQL's SSL request
   * packet). The plain socket keeps its error listener: an error emitted with none would crash.
   */
  async startTls(options: ConnectionOptions): Promise<void> {
    if (this.#failure !== undefined) throw new ProbeFailure(this.#failure);
    const plain = this.#socket;
    plain.off('data', this.#onData);
    this.#phase = 'tls';
    const secure = tlsConnect({ ...options, socket: plain });
    this.#socket = secure;
    let done = false;
    secure.once('secureConnect', () => {
      done = true;
      this.#phase = 'open';
      this.#wakeReader();
    });
    this.#listen(secure);
    await this.#until(() => done);
  }

  /**
   * Ends politely: sends `farewell`, half-closes, and lets the server close — within LINGER_MS, after
   * which the socket is destroyed (the check's own timeout is over by then; a peer that never
   * closes must not keep a socket per check).
   */
  end(farewell?: Uint8Array): void {
    if (this.#failure !== undefined) return;
    this.#politelyEnded = true;
    this.#failure = 'closed';
    if (farewell) this.#socket.end(farewell);
    else this.#socket.end();
    const socket = this.#socket;
    const linger = setTimeout(() => socket.destroy(), LINGER_MS);
    linger.unref();
    socket.once('close', () => clearTimeout(linger));
  }

  /** Releases the socket: destroyed now, unless a polite end is under way. */
  close(): void {
    if (!this.#politelyEnded) this.#fail('closed');
  }
}

/** How long a politely ended probe connection may wait for the server to close it. */
const LINGER_MS = 2_000;

/** TLS options for a check that sets `tls_enabled`: verification as configured, SNI from `host_header`. */
export function tlsOptions(check: HealthCheck): ConnectionOptions {
  return { rejectUnauthorized: check.tls_verify, ...(check.host_header ? { servername: check.host_header } : {}) };
}

/** Runs one conversation; its failures, expected or not, become a failed result. The socket never outlives it. */
export async function converse(
  target: ProbeTarget,
  signal: AbortSignal,
  tls: ConnectionOptions | undefined,
  talk: (wire: Wire) => Promise<ProbeResult>,
): Promise<ProbeResult> {
  const wire = new Wire(target, signal, tls);
  try {
    return await talk(wire);
  } catch (err) {
    return { ok: false, error: err instanceof ProbeFailure ? err.message : `probe error: ${(err as Error).message}` };
  } finally {
    wire.close();
  }
}

/** Unexpected bytes, shown safely and briefly: a quoted, escaped prefix. */
export function quote(bytes: Uint8Array): string {
  const text = Buffer.from(bytes.subarray(0, 40)).toString('latin1');
  return JSON.stringify(text) + (bytes.length > 40 ? '…' : '');
}
