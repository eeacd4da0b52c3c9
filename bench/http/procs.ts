// Process groups and /proc readings.
//
// Every child is spawned detached, so it leads its own process group (its pid is the group id) and
// can be stopped with everything it forked (nginx workers, a shell's exec'd program). Groups are
// stopped by that recorded id only, never by name. The ids are also written to a pid file, so a run
// that was SIGKILLed can have its leftovers stopped by the next one.
import { spawn, execFileSync, type ChildProcess, type StdioOptions } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

export interface Group {
  name: string;
  pid: number;
  child: ChildProcess;
  /** Resolves with the exit code (or the signal name) once the leader has exited. */
  exited: Promise<number | string>;
}

export interface StartOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** stdout and stderr are appended here (default: discarded). */
  logFile?: string;
  /** Overrides the log file: full control of stdin/stdout/stderr (e.g. 'ipc' for a Node child). */
  stdio?: StdioOptions;
  /** Minimum soft RLIMIT_NOFILE the child needs; raised through `bash -c 'ulimit -n'` if ours is lower. */
  nofile?: number;
}

const groups = new Map<number, Group>();
let pidFile: string | undefined;
/** Set once shutdown has begun: the main flow may still be running and must not start anything new. */
let closing = false;

export const log = (msg: string) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

/** Records the live groups in `file` from now on, after stopping leftovers a killed run recorded there. */
export async function usePidFile(file: string): Promise<void> {
  let old: { pid: number; start: number; name: string }[] = [];
  try {
    old = JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    // no earlier run, or an unreadable file: nothing to clean up
  }
  for (const o of old) {
    // The start time guards against a recycled pid: only the very process we started matches.
    if (readStat(o.pid)?.start === o.start) {
      log(`stopping leftover ${o.name} (pid ${o.pid}) of an earlier run`);
      await stopPgid(o.pid);
    }
  }
  pidFile = file;
  savePids();
}

function savePids(): void {
  if (!pidFile) return;
  const rows = [...groups.values()].map((g) => ({ pid: g.pid, name: g.name, start: readStat(g.pid)?.start ?? 0 }));
  writeFileSync(pidFile, JSON.stringify(rows));
}

/** Soft and hard RLIMIT_NOFILE of this process (children inherit them). */
export function fdLimits(): { soft: number; hard: number } {
  const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
  const [soft, hard] = (line ?? '').split(/\s+/).slice(3, 5).map((v) => (v === 'unlimited' ? Infinity : Number(v)));
  return { soft: soft ?? 1024, hard: hard ?? 1024 };
}

/** Starts `cmd` as the leader of a new process group and registers it for stopAll(). */
export function startGroup(name: string, cmd: string, args: readonly string[], opts: StartOptions = {}): Group {
  if (closing) throw new Error(`not starting ${name}: shutting down`);
  let file = cmd;
  let argv = [...args];
  if (opts.nofile !== undefined) {
    const { soft, hard } = fdLimits();
    const want = Math.min(opts.nofile, hard);
    if (soft < want) {
      // Node cannot set rlimits; a shell can, and exec keeps the pid (and so the group) the same.
      argv = ['-c', `ulimit -n ${want} && exec "$0" "$@"`, cmd, ...args];
      file = 'bash';
    }
  }
  const fd = opts.logFile ? openSync(opts.logFile, 'a') : undefined;
  const stdio: StdioOptions = opts.stdio ?? ['ignore', fd ?? 'ignore', fd ?? 'ignore'];
  const child = spawn(file, argv, { cwd: opts.cwd, env: opts.env ?? process.env, stdio, detached: true });
  if (fd !== undefined) closeSync(fd); // the child has its own copy
  child.once('error', () => {}); // reported below (no pid) instead of as an unhandled 'error' event
  if (child.pid === undefined) {
    // spawn failed synchronously (e.g. ENOENT); the 'error' event carries the reason
    throw new Error(`cannot start ${name}: ${cmd} not found or not executable`);
  }
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, sig) => resolve(code ?? sig ?? -1)));
  const g: Group = { name, pid: child.pid, child, exited };
  groups.set(g.pid, g);
  savePids();
  return g;
}

/** Runs a command to completion in its own group (so a Ctrl-C of the harness also stops it). */
export async function runGroup(name: string, cmd: string, args: readonly string[], opts: StartOptions = {}): Promise<number | string> {
  const g = startGroup(name, cmd, args, opts);
  const code = await g.exited;
  await stopGroup(g); // reaps anything the command left behind in its group
  return code;
}

/** Non-zombie members of process group `pgid`. */
function groupMembers(pgid: number): number[] {
  const out: number[] = [];
  for (const p of readAllStats()) if (p.pgid === pgid && p.state !== 'Z' && p.state !== 'X') out.push(p.pid);
  return out;
}

/** SIGTERM to the group, SIGKILL to whatever is left after 5 s. */
async function stopPgid(pgid: number): Promise<void> {
  if (groupMembers(pgid).length === 0) return;
  signalGroup(pgid, 'SIGTERM');
  for (let i = 0; i < 50 && groupMembers(pgid).length > 0; i++) await sleep(100);
  if (groupMembers(pgid).length > 0) {
    log(`process group ${pgid} did not stop on SIGTERM within 5 s: SIGKILL`);
    signalGroup(pgid, 'SIGKILL');
    for (let i = 0; i < 20 && groupMembers(pgid).length > 0; i++) await sleep(100);
  }
}

function signalGroup(pgid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pgid, sig);
  } catch {
    // ESRCH: the group is already gone
  }
}

export async function stopGroup(g: Group): Promise<void> {
  if (!groups.has(g.pid)) return;
  await stopPgid(g.pid);
  await Promise.race([g.exited, sleep(1000)]);
  groups.delete(g.pid);
  savePids();
}

/** Stops every group still running, all at once (each gets its own 5 s grace), and refuses new ones. */
export async function stopAll(): Promise<void> {
  closing = true;
  await Promise.all([...groups.values()].reverse().map((g) => stopGroup(g)));
}

/** Last resort on process exit (no time left for a grace period): SIGKILL what is still registered. */
export function killAllNow(): void {
  for (const g of groups.values()) signalGroup(g.pid, 'SIGKILL');
  groups.clear();
  savePids();
}

export function isRunning(g: Group): boolean {
  return g.child.exitCode === null && g.child.signalCode === null;
}

// ---- /proc readings ------------------------------------------------------------------------

interface Stat {
  pid: number;
  state: string;
  ppid: number;
  pgid: number;
  /** utime + stime in clock ticks, all threads */
  ticks: number;
  /** start time after boot, in clock ticks: with the pid, identifies one process */
  start: number;
}

function parseStat(pid: number, text: string): Stat {
  // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { pid, state: f[0]!, ppid: Number(f[1]), pgid: Number(f[2]), ticks: Number(f[11]) + Number(f[12]), start: Number(f[19]) };
}

/** Start time of a process (clock ticks after boot), or undefined if it is gone. */
export function startTime(pid: number): number | undefined {
  return readStat(pid)?.start;
}

function readStat(pid: number): Stat | undefined {
  try {
    return parseStat(pid, readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return undefined; // exited meanwhile
  }
}

function readAllStats(): Stat[] {
  const out: Stat[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const s = readStat(Number(d));
    if (s) out.push(s);
  }
  return out;
}

/** The group leader, its descendants and its group's members: everything a proxy runs as. */
export function treePids(root: number): number[] {
  const all = readAllStats();
  const set = new Set<number>([root]);
  for (const p of all) if (p.pgid === root) set.add(p.pid);
  for (let grew = true; grew; ) {
    grew = false;
    for (const p of all) {
      if (!set.has(p.pid) && set.has(p.ppid)) {
        set.add(p.pid);
        grew = true;
      }
    }
  }
  return [...set];
}

/** Summed utime + stime (clock ticks) of a process tree. */
export function cpuTicks(root: number): number {
  let t = 0;
  for (const pid of treePids(root)) t += readStat(pid)?.ticks ?? 0;
  return t;
}

/** Summed VmRSS (kB) of a process tree. */
export function rssKb(root: number): number {
  let kb = 0;
  for (const pid of treePids(root)) {
    try {
      const m = /^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (m) kb += Number(m[1]);
    } catch {
      // exited meanwhile
    }
  }
  return kb;
}

/** Clock ticks per second, to turn /proc tick counts into CPU seconds. */
export const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** System-wide count of TCP connect()s: per request it shows whether connections are reused. */
export function tcpActiveOpens(): number {
  const lines = readFileSync('/proc/net/snmp', 'utf8').split('\n').filter((l) => l.startsWith('Tcp:'));
  const names = lines[0]?.split(/\s+/) ?? [];
  const values = lines[1]?.split(/\s+/) ?? [];
  return Number(values[names.indexOf('ActiveOpens')] ?? 0);
}
