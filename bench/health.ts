/**
 * Health checking at scale — a benchmark, not a test. Starts Fulcrum as its own process, gives it
 * 2,000 backends on loopback (half under a TCP check, half under an HTTP check, every second), and
 * measures:
 *   1. the CPU Fulcrum spends checking them, as % of one core, over a steady 10 s;
 *   2. how long a backend that dies takes to leave the rotation, against the bound
 *      interval × unhealthy_threshold + timeout.
 * Usage: npm run bench:health [-- --backends 2000 --seconds 10]
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { backends: { type: 'string', default: '2000' }, seconds: { type: 'string', default: '10' } } });
const BACKENDS = Number(values.backends);
const SECONDS = Number(values.seconds);
const CHECK = { interval_seconds: 1, timeout_seconds: 1, healthy_threshold: 2, unhealthy_threshold: 3, jitter_percent: 10 };
const HZ = 100; // clock ticks per second of /proc/<pid>/stat on Linux

async function freePort(): Promise<number> {
  const s = createNetServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** utime + stime of a process, in seconds. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / HZ;
}

async function main(): Promise<void> {
  // The backends: plain HTTP servers on loopback (a TCP check only needs the accept).
  const servers: Server[] = [];
  for (let i = 0; i < BACKENDS; i++) {
    const s = createHttpServer((_req, res) => res.end('ok'));
    s.keepAliveTimeout = 5000; // node's default: an HTTP check reuses its connection
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
    servers.push(s);
  }
  const dataDir = mkdtempSync(join(tmpdir(), 'fulcrum-bench-health-'));
  const token = `bench-${randomBytes(16).toString('hex')}`;
  const apiPort = await freePort();
  const root = resolve(import.meta.dirname, '..');
  // FULCRUM_BENCH_NODE_ARGS adds node flags to Fulcrum's command, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
  const nodeArgs = (process.env.FULCRUM_BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const child = spawn(join(root, 'node_modules/.bin/node'), [...nodeArgs, 'src/main.ts', 'serve'], {
    cwd: root,
    env: { ...process.env, FULCRUM_DATA_DIR: dataDir, FULCRUM_API_ADDR: `127.0.0.1:${apiPort}`, FULCRUM_ADMIN_TOKEN: token, FULCRUM_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const base = `http://127.0.0.1:${apiPort}/api/v1`;
  const call = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${base}${path}`, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
    const json = (await res.json()) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- a bench reads a few known fields
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
    return json;
  };
  try {
    for (let i = 0; i < 100; i++) {
      if (await fetch(`http://127.0.0.1:${apiPort}/health`).then((r) => r.ok, () => false)) break;
      await sleep(100);
    }
    const tcp = await call('POST', '/pools', { name: 'tcp-checked', health_check: { protocol: 'TCP', ...CHECK } });
    const http = await call('POST', '/pools', { name: 'http-checked', health_check: { protocol: 'HTTP', path: '/health', ...CHECK } });
    const t0 = Date.now();
    const ids: { pool: string; id: string }[] = [];
    for (const [i, s] of servers.entries()) {
      const pool = i % 2 === 0 ? tcp.pool_id : http.pool_id;
      const b = await call('POST', `/pools/${pool}/backends`, { name: `b${i}`, ip_address: '127.0.0.1', port: (s.address() as AddressInfo).port });
      ids.push({ pool, id: b.server_id });
    }
    console.log(`configured ${BACKENDS} backends in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

    // Wait for every backend to be healthy, then let the loops settle into their rhythm.
    for (;;) {
      const [a, b] = await Promise.all([call('GET', `/pools/${tcp.pool_id}/backends?per_page=1`), call('GET', `/pools/${http.pool_id}/backends?per_page=1`)]);
      if (a.summary.healthy + b.summary.healthy === BACKENDS) break;
      await sleep(250);
    }
    await sleep(2000);
    const c0 = cpuSeconds(child.pid!);
    const w0 = Date.now();
    await sleep(SECONDS * 1000);
    const cpu = ((cpuSeconds(child.pid!) - c0) / ((Date.now() - w0) / 1000)) * 100;
    console.log(`checking ${BACKENDS} backends every ${CHECK.interval_seconds} s (TCP and HTTP, half each): Fulcrum CPU ${cpu.toFixed(1)} % of one core over ${SECONDS} s (target < 25 %)`);

    // Kill one backend of each kind; time until the API shows it out of rotation.
    const bound = (CHECK.interval_seconds * CHECK.unhealthy_threshold + CHECK.timeout_seconds) * 1000;
    for (const victim of [0, 1]) {
      const server = servers[victim]!;
      const { pool, id } = ids[victim]!;
      const killedAt = Date.now();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      let status = '';
      while (status !== 'UNHEALTHY' && Date.now() - killedAt < bound * 3) {
        status = (await call('GET', `/pools/${pool}/backends/${id}`)).status;
        if (status !== 'UNHEALTHY') await sleep(20);
      }
      const took = Date.now() - killedAt;
      console.log(`${victim === 0 ? 'TCP' : 'HTTP'}-checked backend killed: out of rotation after ${took} ms (bound interval × unhealthy_threshold + timeout = ${bound} ms) ${took <= bound ? 'PASS' : 'MISS'}`);
    }
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    for (const s of servers) s.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

await main();
