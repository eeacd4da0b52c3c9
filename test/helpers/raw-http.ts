/**
 * Raw HTTP/1.1 over TCP for data plane tests: a client that sends exact bytes and parses exactly
 * what comes back (interim 1xx responses included, bodies framed per RFC 9112 §6.3), and a raw
 * TCP "backend" that answers whatever bytes a test wants.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

export interface RawResponse {
  version: string;
  status: number;
  reason: string;
  /** Header fields as received, in order. */
  rawHeaders: [string, string][];
  /** Lower-cased names; repeated fields joined with ', '. */
  headers: Record<string, string>;
  body: Buffer;
  /** Framed with Transfer-Encoding: chunked. */
  chunked: boolean;
  /** Framed by the connection closing (no Content-Length, not chunked). */
  closeDelimited: boolean;
  /** The head as text, for failure messages. */
  head: string;
}

/** Every header value named `name` (case-insensitive), in order. */
export function headerValues(res: { rawHeaders: [string, string][] }, name: string): string[] {
  const lower = name.toLowerCase();
  return res.rawHeaders.filter(([n]) => n.toLowerCase() === lower).map(([, v]) => v);
}

class Incomplete extends Error {}

/**
 * Parses one response at the start of `buf`. Returns it and how many bytes it used, or null when
 * more bytes are needed. `eof` says the connection has ended (close-delimited bodies end there).
 */
export function parseResponse(buf: Buffer, opts: { head?: boolean; eof: boolean }): { res: RawResponse; used: number } | null {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) {
    if (opts.eof) throw new Incomplete(`connection ended inside a response head: ${JSON.stringify(buf.toString('latin1').slice(0, 300))}`);
    return null;
  }
  const head = buf.subarray(0, end).toString('latin1');
  const lines = head.split('\r\n');
  const m = /^(HTTP\/\d\.\d) (\d{3})(?: (.*))?$/.exec(lines[0]!);
  if (!m) throw new Error(`not an HTTP status line: ${JSON.stringify(lines[0])} (head ${JSON.stringify(head.slice(0, 300))})`);
  const status = Number(m[2]);
  const rawHeaders: [string, string][] = [];
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) throw new Error(`malformed header line ${JSON.stringify(line)}`);
    const name = line.slice(0, colon);
    const value = line.slice(colon + 1).trim();
    rawHeaders.push([name, value]);
    const lower = name.toLowerCase();
    headers[lower] = headers[lower] === undefined ? value : `${headers[lower]}, ${value}`;
  }
  const res: RawResponse = { version: m[1]!, status, reason: m[3] ?? '', rawHeaders, headers, body: Buffer.alloc(0), chunked: false, closeDelimited: false, head };
  let pos = end + 4;
  // RFC 9112 §6.3: 1xx, 204, 304 and responses to HEAD have no content, whatever their fields say.
  if (status < 200 || status === 204 || status === 304 || opts.head) return { res, used: pos };
  const te = headers['transfer-encoding'];
  if (te !== undefined && /(^|,)\s*chunked\s*$/i.test(te)) {
    res.chunked = true;
    const parts: Buffer[] = [];
    for (;;) {
      const lineEnd = buf.indexOf('\r\n', pos);
      if (lineEnd < 0) return needMore(opts.eof, 'a chunk size line');
      const sizeText = buf.subarray(pos, lineEnd).toString('latin1').split(';')[0]!.trim();
      if (!/^[0-9a-fA-F]+$/.test(sizeText)) throw new Error(`bad chunk size ${JSON.stringify(sizeText)}`);
      const size = parseInt(sizeText, 16);
      pos = lineEnd + 2;
      if (size === 0) {
        // Trailer section: fields until an empty line.
        for (;;) {
          const tEnd = buf.indexOf('\r\n', pos);
          if (tEnd < 0) return needMore(opts.eof, 'the trailer section');
          const line = buf.subarray(pos, tEnd).toString('latin1');
          pos = tEnd + 2;
          if (line === '') break;
        }
        break;
      }
      if (buf.length < pos + size + 2) return needMore(opts.eof, 'chunk data');
      parts.push(buf.subarray(pos, pos + size));
      if (buf[pos + size] !== 0x0d || buf[pos + size + 1] !== 0x0a) throw new Error('chunk data not followed by CRLF');
      pos += size + 2;
    }
    res.body = Buffer.concat(parts);
    return { res, used: pos };
  }
  const cl = headers['content-length'];
  if (cl !== undefined) {
    if (!/^\d+$/.test(cl)) throw new Error(`bad Content-Length ${JSON.stringify(cl)}`);
    const n = Number(cl);
    if (buf.length < pos + n) return needMore(opts.eof, `${n} bytes of content`);
    res.body = Buffer.from(buf.subarray(pos, pos + n));
    return { res, used: pos + n };
  }
  if (!opts.eof) return null;
  res.closeDelimited = true;
  res.body = Buffer.from(buf.subarray(pos));
  return { res, used: buf.length };
}

function needMore(eof: boolean, what: string): null {
  if (eof) throw new Incomplete(`connection ended while waiting for ${what}`);
  return null;
}

/** How long a read waits before failing the test with what it has so far. */
const READ_DEADLINE_MS = 10_000;

/** A TCP client speaking exact bytes; reads responses one by one. */
export class RawClient {
  readonly socket: Socket;
  #buf: Buffer = Buffer.alloc(0);
  #eof = false;
  #error: Error | undefined;
  #wake: (() => void) | undefined;
  /** Resolves once the server has closed (or reset) the connection. */
  readonly ended: Promise<void>;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
      this.#wake?.();
    });
    this.ended = new Promise((resolve) => {
      const done = () => {
        this.#eof = true;
        this.#wake?.();
        resolve();
      };
      socket.once('end', done);
      socket.once('close', done);
    });
    socket.on('error', (err) => {
      this.#error = err;
    });
  }

  static connect(port: number, host = '127.0.0.1'): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host, port, noDelay: true });
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new RawClient(socket));
      });
    });
  }

  /** Writes bytes; resolves once they are handed to the OS. */
  write(data: string | Buffer): Promise<void> {
    return new Promise((resolve, reject) => this.socket.write(data, (err) => (err ? reject(err) : resolve())));
  }

  /** Bytes received and not yet consumed by a read. */
  get pending(): Buffer {
    return this.#buf;
  }

  get eof(): boolean {
    return this.#eof;
  }

  async #until<T>(attempt: () => T | null, what: string): Promise<T> {
    const deadline = Date.now() + READ_DEADLINE_MS;
    for (;;) {
      const got = attempt();
      if (got !== null) return got;
      if (this.#eof) throw new Error(`connection closed while waiting for ${what}; have ${JSON.stringify(this.#buf.toString('latin1').slice(0, 300))}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${what} within ${READ_DEADLINE_MS} ms; have ${JSON.stringify(this.#buf.toString('latin1').slice(0, 300))}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(timer);
          this.#wake = undefined;
          resolve();
        };
      });
    }
  }

  /** The next message: an interim 1xx or a final response. `head` frames it as a response to HEAD. */
  next(opts: { head?: boolean } = {}): Promise<RawResponse> {
    return this.#until(() => {
      const parsed = parseResponse(this.#buf, { head: opts.head, eof: this.#eof });
      if (parsed === null) return null;
      this.#buf = this.#buf.subarray(parsed.used);
      return parsed.res;
    }, 'a response');
  }

  /** The final response, and the interim responses before it. */
  async final(opts: { head?: boolean } = {}): Promise<RawResponse & { interim: RawResponse[] }> {
    const interim: RawResponse[] = [];
    for (;;) {
      const r = await this.next(opts);
      if (r.status >= 200) return Object.assign(r, { interim });
      interim.push(r);
    }
  }

  /** Everything until the server closes the connection. */
  async rest(): Promise<Buffer> {
    await this.#until(() => (this.#eof ? true : null), 'the connection to close');
    const all = this.#buf;
    this.#buf = Buffer.alloc(0);
    return all;
  }

  /** Waits until the server closes the connection; true when it did within the read deadline. */
  async closedByServer(): Promise<boolean> {
    try {
      await this.rest();
      return true;
    } catch {
      return false;
    }
  }

  get error(): Error | undefined {
    return this.#error;
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** Sends `bytes` on a new connection and returns the final response (the connection stays open). */
export async function rawExchange(port: number, bytes: string | Buffer, opts: { head?: boolean } = {}): Promise<{ client: RawClient; res: RawResponse & { interim: RawResponse[] } }> {
  const client = await RawClient.connect(port);
  try {
    await client.write(bytes);
    return { client, res: await client.final(opts) };
  } catch (err) {
    client.destroy();
    throw err;
  }
}

/** A request head (and optional body) with CRLF line ends; `Host` first unless given. */
export function rawRequest(method: string, path: string, headers: [string, string | number][] = [], body: string | Buffer = ''): Buffer {
  const lines = [`${method} ${path} HTTP/1.1`];
  if (!headers.some(([n]) => n.toLowerCase() === 'host')) lines.push('Host: fulcrum.test');
  for (const [n, v] of headers) lines.push(`${n}: ${v}`);
  return Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), typeof body === 'string' ? Buffer.from(body, 'latin1') : body]);
}

export interface RawBackend {
  port: number;
  server: Server;
  /** Connections accepted so far. */
  connections: number;
  /** Every byte received, per connection. */
  received: Buffer[];
  close(): Promise<void>;
}

/** A TCP server that hands each connection to `onConnection`; records what it received. */
export async function startRawBackend(onConnection: (socket: Socket, received: () => Buffer) => void): Promise<RawBackend> {
  const sockets = new Set<Socket>();
  const backend: RawBackend = {
    port: 0,
    server: createServer((socket) => {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
      socket.on('error', () => socket.destroy());
      const index = backend.received.length;
      backend.received.push(Buffer.alloc(0));
      backend.connections++;
      socket.on('data', (c: Buffer) => {
        backend.received[index] = Buffer.concat([backend.received[index]!, c]);
      });
      onConnection(socket, () => backend.received[index]!);
    }),
    connections: 0,
    received: [],
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        backend.server.close(() => resolve());
      }),
  };
  await new Promise<void>((resolve) => backend.server.listen({ host: '127.0.0.1', port: 0 }, () => resolve()));
  backend.port = (backend.server.address() as AddressInfo).port;
  return backend;
}
