import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import pino from 'pino';
import { startFulcrum, type Fulcrum } from '../../src/app.ts';
import type { ServerConfig } from '../../src/config/settings.ts';

export const TEST_TOKEN = 'test-admin-token-0123456789';

export function tempDir(prefix = 'fulcrum-test-'): { path: string; remove: () => void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

export interface ApiResponse<T = any> {
  status: number;
  headers: Headers;
  body: T;
}

/** A thin client of the management API that answers status, headers and parsed JSON. */
export class ApiClient {
  readonly base: string;
  /** null sends no Authorization header at all. */
  readonly token: string | null;

  constructor(base: string, token: string | null = TEST_TOKEN) {
    this.base = base;
    this.token = token;
  }

  async request<T = any>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<ApiResponse<T>> {
    const h: Record<string, string> = { ...headers };
    if (this.token !== null && h.authorization === undefined) h.authorization = `Bearer ${this.token}`;
    let payload: string | undefined;
    if (body !== undefined) {
      payload = typeof body === 'string' ? body : JSON.stringify(body);
      h['content-type'] ??= 'application/json';
    }
    const res = await fetch(`${this.base}${path}`, { method, headers: h, body: payload });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text === '' ? undefined : JSON.parse(text);
    } catch {
      // not JSON: keep the text
    }
    return { status: res.status, headers: res.headers, body: parsed as T };
  }

  get<T = any>(path: string, headers?: Record<string, string>) {
    return this.request<T>('GET', path, undefined, headers);
  }
  post<T = any>(path: string, body?: unknown, headers?: Record<string, string>) {
    return this.request<T>('POST', path, body, headers);
  }
  put<T = any>(path: string, body?: unknown, headers?: Record<string, string>) {
    return this.request<T>('PUT', path, body, headers);
  }
  patch<T = any>(path: string, body?: unknown, headers?: Record<string, string>) {
    return this.request<T>('PATCH', path, body, headers);
  }
  delete<T = any>(path: string, headers?: Record<string, string>) {
    return this.request<T>('DELETE', path, undefined, headers);
  }
}

export interface TestFulcrum {
  fulcrum: Fulcrum;
  api: ApiClient;
  dataDir: string;
  /** Stops the service and removes its data dir. */
  close(): Promise<void>;
}

/** Starts a real Fulcrum in this process: API on 127.0.0.1 port 0, store in a fresh temp dir. */
export async function startTestFulcrum(overrides: Partial<ServerConfig> = {}): Promise<TestFulcrum> {
  const dir = overrides.dataDir === undefined ? tempDir() : undefined;
  const config: ServerConfig = {
    apiAddr: { host: '127.0.0.1', port: 0 },
    dataDir: dir?.path ?? overrides.dataDir!,
    logLevel: 'silent',
    adminToken: TEST_TOKEN,
    shutdownTimeoutMs: 5000,
    apiBodyLimitBytes: 1_048_576,
    ...overrides,
  };
  const fulcrum = await startFulcrum(config, { log: pino({ level: process.env.FULCRUM_TEST_LOG ?? 'silent' }) });
  const api = new ApiClient(`http://127.0.0.1:${fulcrum.apiAddress.port}`);
  return {
    fulcrum,
    api,
    dataDir: config.dataDir,
    close: async () => {
      await fulcrum.stop();
      dir?.remove();
    },
  };
}

/** A TCP port that was free a moment ago, on loopback (for listeners, which need a fixed port). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port: 0 }, () => resolve());
  });
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
