// The external programs the benchmark drives, installed from the distribution's packages when missing.
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import { log } from './procs.ts';

export interface Tools {
  wrk: string;
  haproxy: string;
  nginx: string;
  curl: string;
  bash: string;
  /** Makes the tls-* scenarios' certificates. */
  openssl: string;
}

/** Debian package of each program (the same name for all of them). */
const PROGRAMS = ['wrk', 'haproxy', 'nginx', 'curl', 'bash', 'openssl'] as const;

/** Absolute path of `prog`, also looking in the sbin directories a non-root PATH often lacks. */
function which(prog: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/local/sbin', '/usr/sbin', '/sbin'];
  for (const dir of dirs) {
    if (!dir) continue;
    const p = join(dir, prog);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

function run(argv: string[]): boolean {
  log(`$ ${argv.join(' ')}`);
  // apt's chatter goes to stderr, so stdout keeps only the results
  const r = spawnSync(argv[0]!, argv.slice(1), {
    stdio: ['inherit', process.stderr, process.stderr],
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  return r.status === 0;
}

/** Finds every program, installing the missing ones with apt-get (as root, or through sudo). */
export function ensureTools(): Tools {
  const missing = PROGRAMS.filter((p) => which(p) === undefined);
  if (missing.length > 0) {
    let prefix: string[] = [];
    if (process.getuid?.() !== 0) {
      if (!which('sudo')) {
        throw new Error(`missing ${missing.join(', ')}; run as root or install them: apt-get install -y --no-install-recommends ${missing.join(' ')}`);
      }
      prefix = ['sudo'];
    }
    if (!which('apt-get')) throw new Error(`missing ${missing.join(', ')} and no apt-get to install them with`);
    const install = [...prefix, 'apt-get', 'install', '-y', '--no-install-recommends', ...missing];
    // A fresh image often has no package lists yet: update once, only if the install fails.
    if (!run(install) && !(run([...prefix, 'apt-get', 'update']) && run(install))) {
      throw new Error(`apt-get could not install ${missing.join(', ')}`);
    }
  }
  const found = Object.fromEntries(PROGRAMS.map((p) => [p, which(p)]));
  const still = PROGRAMS.filter((p) => !found[p]);
  if (still.length > 0) throw new Error(`still missing after install: ${still.join(', ')}`);
  return found as unknown as Tools;
}

/** Start of the first line of a program's version output (e.g. "curl 7.88.1"), for the run's metadata. */
export function version(argv: string[]): string {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
  const line = `${r.stdout ?? ''}${r.stderr ?? ''}`.split('\n').find((l) => l.trim()) ?? '?';
  return line.trim().split(/\s+/).slice(0, 3).join(' ');
}
