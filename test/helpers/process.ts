import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

const MAIN = fileURLToPath(new URL('../../src/main.ts', import.meta.url));

export interface FulcrumProcess {
  child: ChildProcess;
  /** The API's port, read from the start-up log line. */
  port: number;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves with the first match of `pattern` in the stream's output so far or to come. */
  waitFor(stream: 'stdout' | 'stderr', pattern: RegExp): Promise<RegExpExecArray>;
  /** Ends the process if it still runs and waits for its exit (for `finally` blocks). */
  kill(): Promise<void>;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function launch(args: string[], env: Record<string, string>) {
  // process.execPath is the Node running the tests: Node 24 under `npm test`.
  const child = spawn(process.execPath, [MAIN, ...args], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = once(child, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }));
  return { child, exited, stdout: () => out, stderr: () => err };
}

/** Runs `fulcrum` to completion (for commands and start-up failures). */
export async function runFulcrum(args: string[], env: Record<string, string>): Promise<Exit> {
  const p = launch(args, env);
  const { code, signal } = await p.exited;
  return { code, signal, stdout: p.stdout(), stderr: p.stderr() };
}

/** Starts `fulcrum serve` with the API on a free loopback port; resolves once it is listening. */
export async function spawnFulcrum(env: Record<string, string>): Promise<FulcrumProcess> {
  const p = launch(['serve'], { FULCRUM_API_ADDR: '127.0.0.1:0', FULCRUM_LOG_LEVEL: 'info', ...env });
  const port = await new Promise<number>((resolve, reject) => {
    const onData = () => {
      const m = /"msg":"fulcrum started"/.test(p.stdout()) ? /"api":"127\.0\.0\.1:(\d+)"/.exec(p.stdout()) : null;
      if (m) {
        p.child.stdout!.off('data', onData);
        resolve(Number(m[1]));
      }
    };
    p.child.stdout!.on('data', onData);
    p.exited.then(({ code, signal }) => reject(new Error(`fulcrum exited before listening (code ${code}, signal ${signal}): ${p.stderr()}`)));
  });
  const waitFor = (stream: 'stdout' | 'stderr', pattern: RegExp) =>
    new Promise<RegExpExecArray>((resolve, reject) => {
      const text = stream === 'stdout' ? p.stdout : p.stderr;
      const check = () => {
        const m = pattern.exec(text());
        if (!m) return false;
        p.child[stream]!.off('data', check);
        resolve(m);
        return true;
      };
      if (check()) return;
      p.child[stream]!.on('data', check);
      p.exited.then(() => {
        if (!check()) reject(new Error(`fulcrum exited without printing ${pattern} on ${stream}`));
      });
    });
  const kill = async () => {
    if (p.child.exitCode !== null || p.child.signalCode !== null) return;
    p.child.kill('SIGKILL');
    await p.exited;
  };
  return { child: p.child, port, stdout: p.stdout, stderr: p.stderr, exited: p.exited, waitFor, kill };
}
