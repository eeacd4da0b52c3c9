// `npm run bench`: Fulcrum vs HAProxy vs a direct origin, over loopback. See bench/README.md.
//
// Flow: install missing tools → refuse taken ports → start origin, HAProxy, Fulcrum (each its own
// process group, all kept for the whole run) → rounds of scenarios, peers interleaved within each
// scenario so that slow drifts of the machine hit every peer alike → stop everything → tables.
import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { cpus, loadavg, totalmem, release } from 'node:os';
import { join } from 'node:path';
import { parseOptions, USAGE, type Options } from './options.ts';
import { ensureTools, version, type Tools } from './tools.ts';
import { usePidFile, stopAll, killAllNow, isRunning, startTime, log, type Group } from './procs.ts';
import { portFree, freePort } from './net.ts';
import { PORTS, shiftPorts } from './configs.ts';
import { ensureBigFile, startOrigin, startHaproxy, directPeer, tail, type Peer } from './peers.ts';
import { startFulcrum, fulcrumNodeArgs, REPO_ROOT } from './fulcrum.ts';
import { warmUp, runWrk, runBulk, wrkShape, bulkVia, portOf, type Bench, type Via } from './measure.ts';
import { runIdle } from './idle.ts';
import { renderReport, unequalResumption, type Row, type ReportMeta } from './report.ts';
import { makeCertificates, probeResumption } from './tls.ts';

const TMP = join(REPO_ROOT, 'bench', '.tmp');
const LOCK = join(TMP, 'run.lock');

/** One run at a time: a second one would stop the first one's processes as "leftovers". */
function takeLock(): void {
  if (existsSync(LOCK)) {
    const o = JSON.parse(readFileSync(LOCK, 'utf8')) as { pid: number; start: number };
    if (startTime(o.pid) === o.start) throw new Error(`another benchmark run is in progress (pid ${o.pid}; lock ${LOCK})`);
  }
  writeFileSync(LOCK, JSON.stringify({ pid: process.pid, start: startTime(process.pid) }));
}

function releaseLock(): void {
  try {
    const o = JSON.parse(readFileSync(LOCK, 'utf8')) as { pid: number };
    if (o.pid === process.pid) unlinkSync(LOCK);
  } catch {
    // not ours, or already gone
  }
}

function timestamp(): string {
  return new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
}

function gitRevision(): string {
  try {
    const rev = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO_ROOT, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: REPO_ROOT, encoding: 'utf8' }).trim();
    return dirty ? `${rev} + uncommitted changes in src/` : rev;
  } catch {
    return 'unknown';
  }
}

function writeMeta(dir: string, o: Options, tools: Tools, apiPort: number | undefined): void {
  const lines = [
    `date: ${new Date().toISOString()}`,
    `host: ${cpus().length} cpus, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, Linux ${release()}, loadavg at start ${loadavg().map((x) => x.toFixed(2)).join(' ')}`,
    `args: duration=${o.duration}s rounds=${o.rounds} scenarios=${o.scenarios.join(',')} peers=${o.peers.join(',')} fulcrum-args='${o.fulcrumArgs}' fulcrum-policies=${o.fulcrumPolicies} port-offset=${o.portOffset}`,
    `ports: origin ${PORTS.origins.join(',')} haproxy ${PORTS.haproxy} (TLS ${PORTS.haproxyTls}, TCP ${PORTS.haproxyTcp}) ` +
      `fulcrum ${PORTS.fulcrum} (TLS ${PORTS.fulcrumTls}, TCP ${PORTS.fulcrumTcp}) fulcrum-api ${apiPort ?? '-'}`,
    `fulcrum: ${gitRevision()}, node ${process.version}`,
    `versions: ${version([tools.haproxy, '-v'])} | ${version([tools.nginx, '-v'])} | ${version([tools.wrk, '-v'])} | ${version([tools.curl, '--version'])} | ` +
      `${version([tools.openssl, 'version']).split(' ').slice(0, 2).join(' ')} (wrk, HAProxy) | OpenSSL ${process.versions.openssl} (Fulcrum's Node)`,
  ];
  writeFileSync(join(dir, 'meta.txt'), `${lines.join('\n')}\n`);
  for (const l of lines) log(l);
}

function summary(r: Row): string {
  if (bulkVia(r.scenario)) return `${r.mb_per_s} MB/s (HTTP ${r.http_code}, ${r.bytes} bytes)`;
  if (r.scenario === 'idle10k') {
    return `RSS +${r.growth_mb} MB (${r.answered_2xx} 2xx, ${r.non2xx} non-2xx, ${r.errors} errors, ${r.still_open} still open)`;
  }
  const rps = Math.round((r.requests ?? 0) / ((r.duration_us ?? 1) / 1e6));
  return `${rps.toLocaleString('en-US')} ${r.scenario.startsWith('tls-hs') ? 'handshakes/s' : 'req/s'}, p99 ${((r.p99_us ?? 0) / 1000).toFixed(2)} ms, non-2xx ${r.err_status}`;
}

function checkAlive(groups: { name: string; group: Group | undefined; logFile?: string }[]): void {
  for (const g of groups) {
    if (g.group && !isRunning(g.group)) throw new Error(`${g.name} has exited; log tail:\n${tail(g.logFile)}`);
  }
}

async function main(o: Options): Promise<void> {
  mkdirSync(TMP, { recursive: true });
  takeLock();
  await usePidFile(join(TMP, 'pids.json'));
  const tools = ensureTools();
  shiftPorts(o.portOffset);

  const want = (p: string) => o.peers.includes(p);
  const via = (s: string): Via | undefined => wrkShape(s)?.via ?? bulkVia(s);
  const tlsScenarios = o.scenarios.filter((s) => via(s) === 'tls');
  // Like TLS, the layer 4 listeners exist only in runs that measure them.
  const tcp = o.scenarios.some((s) => via(s) === 'tcp');
  const ports = [...PORTS.origins];
  if (want('haproxy')) ports.push(PORTS.haproxy, ...(tlsScenarios.length ? [PORTS.haproxyTls] : []), ...(tcp ? [PORTS.haproxyTcp] : []));
  if (want('fulcrum')) ports.push(PORTS.fulcrum, ...(tlsScenarios.length ? [PORTS.fulcrumTls] : []), ...(tcp ? [PORTS.fulcrumTcp] : []));
  for (const p of ports) if (!(await portFree(p))) throw new Error(`port 127.0.0.1:${p} is in use; stop whatever holds it (ss -ltnp 'sport = :${p}') and retry`);
  const apiPort = want('fulcrum') ? await freePort(ports) : undefined;

  const outDir = join(TMP, 'results', timestamp());
  const rawDir = join(outDir, 'raw');
  const logDir = join(outDir, 'logs');
  mkdirSync(rawDir, { recursive: true });
  mkdirSync(logDir, { recursive: true });
  const stateDir = join(TMP, 'state'); // configs, nginx prefix, Fulcrum's store: this run only
  rmSync(stateDir, { recursive: true, force: true });
  mkdirSync(stateDir, { recursive: true });
  writeMeta(outDir, o, tools, apiPort);
  log(`results -> ${outDir}`);

  await ensureBigFile(join(TMP, 'www'));
  // A certificate of this run only, in the state dir (never in the repository): both peers serve it.
  const tls = tlsScenarios.length ? makeCertificates(tools, stateDir) : undefined;
  const origin = await startOrigin(tools, stateDir, join(TMP, 'www'), logDir);
  const peers: Peer[] = [];
  const meta: ReportMeta = {};
  for (const name of o.peers) {
    if (name === 'direct') peers.push(directPeer());
    if (name === 'haproxy') peers.push(await startHaproxy(tools, stateDir, logDir, tls, tcp));
    if (name === 'fulcrum') {
      const nodeArgs = fulcrumNodeArgs(o.fulcrumArgs, outDir);
      const f = await startFulcrum({ stateDir, logDir, apiPort: apiPort!, nodeArgs, require200: o.require200, tls, tcp, policies: o.fulcrumPolicies });
      meta.fulcrumStartStatus = f.startStatus;
      peers.push(f);
    }
  }
  if (tls) {
    // Whether each peer resumes wrk's TLS sessions decides what tls-hs measures: checked, not assumed.
    meta.tlsProbe = {};
    for (const p of peers) {
      if (p.tlsPort === undefined) continue;
      const c = await probeResumption(tools, p.tlsPort, join(rawDir, `${p.name}.tls-probe.txt`));
      meta.tlsProbe[p.name] = c;
      log(`tls probe ${p.name}: ${c.resumed} of ${c.handshakes} handshakes resumed (${c.offered} offered); ${Object.keys(c.params).join(', ')}`);
      if (c.handshakes === 0) log(`WARNING: the TLS probe saw no handshake with ${p.name}; see raw/${p.name}.tls-probe.txt`);
    }
    const odd = unequalResumption(meta.tlsProbe);
    if (odd.length > 0) log(`WARNING: ${odd.join(', ')} resume(s) a different share of TLS handshakes than haproxy: tls-hs compares different work`);
  }
  writeFileSync(join(outDir, 'meta.json'), JSON.stringify(meta));
  const watched = [{ name: 'origin', group: origin, logFile: join(logDir, 'origin.log') }, ...peers];

  const bench: Bench = { tools, rawDir, duration: o.duration, origin };
  const rows: Row[] = [];
  const t0 = Date.now();
  for (let round = 1; round <= o.rounds; round++) {
    // HTTP (also before TLS scenarios, as it always was); a run of tcp-* only skips it.
    if (o.scenarios.some((s) => (wrkShape(s)?.via ?? 'tcp') !== 'tcp')) {
      for (const p of peers) await warmUp(bench, p);
    }
    // The TLS path and the layer 4 relay have their own code to warm up (Fulcrum's JIT): 1 s of
    // tls-ka64 per peer with a TLS port, 1 s of tcp-ka64 per peer with a TCP port.
    if (tlsScenarios.length) {
      for (const p of peers) if (p.tlsPort !== undefined) await warmUp(bench, p, 'tls');
    }
    if (tcp) {
      for (const p of peers) if (p.tcpPort !== undefined) await warmUp(bench, p, 'tcp');
    }
    for (const sc of o.scenarios) {
      for (const p of peers) {
        if (sc === 'idle10k' && !p.group) continue; // no proxy to measure for `direct`
        const v = via(sc);
        if (v && portOf(p, v) === undefined) continue; // `direct`: the origin has no TLS
        checkAlive(watched);
        const row = bulkVia(sc) ? await runBulk(bench, p, sc, round) : sc === 'idle10k' ? await runIdle(bench, p, round) : await runWrk(bench, p, sc, round);
        rows.push(row);
        appendFileSync(join(outDir, 'results.jsonl'), `${JSON.stringify(row)}\n`);
        log(`r${round} ${p.name} ${sc}: ${summary(row)}`);
      }
    }
  }
  checkAlive(watched);
  await stopAll();
  log(`measured in ${Math.round((Date.now() - t0) / 1000)} s`);
  const report = renderReport(rows, meta);
  writeFileSync(join(outDir, 'table.md'), `${report}\n`);
  process.stdout.write(`\n${report}\n\nResults: ${outDir}\n`);
}

/** --report DIR: re-print the tables of an earlier run. */
function reprint(dir: string): void {
  const rows = readFileSync(join(dir, 'results.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Row);
  const metaFile = join(dir, 'meta.json');
  const meta = existsSync(metaFile) ? (JSON.parse(readFileSync(metaFile, 'utf8')) as ReportMeta) : {};
  process.stdout.write(`${renderReport(rows, meta)}\n`);
}

let options: Options;
try {
  options = parseOptions(process.argv.slice(2));
} catch (err) {
  process.stderr.write(`${(err as Error).message}\n\n${USAGE}\n`);
  process.exit(2);
}
if (options.help) {
  process.stdout.write(`${USAGE}\n`);
} else if (options.report) {
  reprint(options.report);
} else {
  let stopping = false;
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      if (stopping) return;
      stopping = true;
      log(`${sig}: stopping every process we started`);
      void stopAll().finally(() => {
        releaseLock();
        process.exit(130);
      });
    });
  }
  // Whatever happens, nothing we started outlives us (no grace period is possible at this point).
  process.on('exit', () => {
    killAllNow();
    releaseLock();
  });
  main(options).then(
    () => releaseLock(),
    async (err: unknown) => {
      if (!stopping) log(`ERROR: ${(err as Error).message}`);
      await stopAll();
      releaseLock();
      process.exitCode = 1;
    },
  );
}
