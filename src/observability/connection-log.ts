/**
 * Connection logging (seed 001 `connectionLogging`): one line per client connection when it
 * closes — when, who, through which listener to which backends, bytes each way, how long, and how
 * it ended — to stdout or to a file under `<data_dir>/logs/`, as JSON or text. Writes are
 * buffered by the stream (never awaited on the data path); files are opened once and appended to.
 */
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { dirname, join, resolve, sep } from 'node:path';
import type { ConnectionLoggingSettings } from '../model/listener.ts';

export interface ConnectionLine {
  /** When the connection was accepted and when it closed, ms since epoch. */
  started: number;
  ended: number;
  listener: string;
  protocol: string;
  client: string;
  clientPort: number;
  /** Backends it was forwarded to, in order; empty when none. */
  backends: readonly string[];
  bytesIn: number;
  bytesOut: number;
  /** How it ended: closed, client_closed, backend_closed, idle_timeout, refused_access_list … */
  end: string;
}

/** A destination other than stdout, as a path inside the logs folder; null when it would leave it. */
export function logFilePath(dataDir: string, destination: string): string | null {
  const root = resolve(dataDir, 'logs');
  const path = resolve(root, destination);
  return path.startsWith(root + sep) ? path : null;
}

function text(l: ConnectionLine): string {
  const backends = l.backends.length === 0 ? '-' : l.backends.join(',');
  return `${new Date(l.ended).toISOString()} ${l.listener} ${l.protocol} ${l.client}:${l.clientPort} -> ${backends} in=${l.bytesIn} out=${l.bytesOut} duration_ms=${l.ended - l.started} end=${l.end}\n`;
}

function json(l: ConnectionLine): string {
  return `${JSON.stringify({
    time: new Date(l.ended).toISOString(),
    started_at: new Date(l.started).toISOString(),
    listener_id: l.listener,
    protocol: l.protocol,
    client: l.client,
    client_port: l.clientPort,
    backends: l.backends,
    bytes_in: l.bytesIn,
    bytes_out: l.bytesOut,
    duration_ms: l.ended - l.started,
    end: l.end,
  })}\n`;
}

export class ConnectionLog {
  readonly #dataDir: string;
  readonly #files = new Map<string, WriteStream>();
  readonly #stdout: (line: string) => void;
  readonly #onError: (path: string, err: Error) => void;
  readonly #reported = new Set<string>();

  constructor(dataDir: string, options: { stdout?: (line: string) => void; onError?: (path: string, err: Error) => void } = {}) {
    this.#dataDir = dataDir;
    this.#stdout = options.stdout ?? ((line) => void process.stdout.write(line));
    this.#onError = options.onError ?? (() => {});
  }

  write(settings: ConnectionLoggingSettings, line: ConnectionLine): void {
    const out = settings.format === 'TEXT' ? text(line) : json(line);
    if (settings.destination === 'stdout') {
      this.#stdout(out);
      return;
    }
    const path = logFilePath(this.#dataDir, settings.destination);
    if (path === null) return; // refused by the API; never written outside the logs folder
    let stream = this.#files.get(path);
    if (!stream) {
      // A file that cannot be made (a folder that is a file, no permission, a full disk) must not
      // take the data plane down: the line is lost, and said so once per file.
      try {
        mkdirSync(dirname(path), { recursive: true });
      } catch (err) {
        this.#failed(path, err as Error);
        return;
      }
      const s = createWriteStream(path, { flags: 'a', mode: 0o640 });
      s.on('error', (err) => {
        if (this.#files.get(path) === s) this.#files.delete(path);
        this.#failed(path, err);
      });
      this.#files.set(path, (stream = s));
    }
    stream.write(out);
  }

  #failed(path: string, err: Error): void {
    if (this.#reported.has(path)) return;
    this.#reported.add(path);
    this.#onError(path, err);
  }

  /** Flushes and closes every file. */
  async close(): Promise<void> {
    const all = [...this.#files.values()];
    this.#files.clear();
    await Promise.all(all.map((s) => new Promise<void>((done) => s.end(() => done()))));
  }

  /** The folder files are written to. */
  get folder(): string {
    return join(this.#dataDir, 'logs');
  }
}
