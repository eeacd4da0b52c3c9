// Command-line options of `npm run bench` (bench/http/run.ts).
import { parseArgs } from 'node:util';

export const USAGE = `Usage: node bench/http/run.ts [options]      (npm run bench -- [options])

HTTP (and layer 4) load benchmark of Fulcrum against HAProxy and a direct origin, on 127.0.0.1 only.

  --duration S        seconds per wrk run (default 5)
  --rounds N          interleaved rounds; tables show the median (default 3)
  --scenarios LIST    comma-separated: ka<N> (keep-alive, N connections), close<N> (Connection: close),
                      tls-ka<N> (keep-alive over TLS), tls-hs<N> (a TLS handshake per request),
                      tcp-ka<N> (keep-alive through the TCP listener / HAProxy mode tcp),
                      bulk (1 GiB download), tcp-bulk (the same through the TCP listener),
                      idle10k (10,000 idle connections)
                      (default ka64,ka256,close64,tls-ka64,tls-hs64,tcp-ka64,bulk,tcp-bulk,idle10k;
                      direct skips tls-*)
  --peers LIST        comma-separated, in this order: direct, haproxy, fulcrum (default all three)
  --fulcrum-args ARGS extra arguments for Fulcrum's node command, e.g. '--cpu-prof' (a profile without
                      a directory is written to the results folder). Also: env FULCRUM_BENCH_NODE_ARGS
  --fulcrum-policies N
                      give Fulcrum's listeners layer 7 policies every request goes through: N routing
                      rules (N-1 for other hosts, then a catch-all forwarding to the same pool), a DENY
                      ACL for another network and a per-client rate limit that never refuses
                      (default 0: none, requests skip the policy stage)
  --require-200       fail unless Fulcrum's listener answers 200 (default: warn, measure, count non-2xx)
  --port-offset N     add N to every fixed port (origin 19101-19103, HAProxy 18080, TLS 18443 and
                      TCP 18090, Fulcrum 18081, TLS 18444 and TCP 18091), when something else holds
                      them (default 0)
  --report DIR        only print the tables of an earlier results folder
  -h, --help          this text

Results: bench/.tmp/results/<timestamp>/ (results.jsonl, table.md, raw/, logs/). See bench/README.md.`;

export const PEERS = ['direct', 'haproxy', 'fulcrum'] as const;

export const DEFAULT_SCENARIOS = 'ka64,ka256,close64,tls-ka64,tls-hs64,tcp-ka64,bulk,tcp-bulk,idle10k';

export interface Options {
  duration: number;
  rounds: number;
  scenarios: string[];
  peers: string[];
  fulcrumArgs: string;
  fulcrumPolicies: number;
  require200: boolean;
  portOffset: number;
  report: string | undefined;
  help: boolean;
}

const list = (s: string) => s.split(',').map((x) => x.trim()).filter(Boolean);

/** `--fulcrum-args --cpu-prof` → `--fulcrum-args=--cpu-prof`: parseArgs refuses a value that looks like an option. */
function joinFulcrumArgs(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--fulcrum-args' && i + 1 < argv.length) out.push(`--fulcrum-args=${argv[++i]}`);
    else out.push(argv[i]!);
  }
  return out;
}

export function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: joinFulcrumArgs(argv),
    options: {
      duration: { type: 'string', default: '5' },
      rounds: { type: 'string', default: '3' },
      scenarios: { type: 'string', default: DEFAULT_SCENARIOS },
      peers: { type: 'string', default: PEERS.join(',') },
      'fulcrum-args': { type: 'string', default: process.env.FULCRUM_BENCH_NODE_ARGS ?? '' },
      'fulcrum-policies': { type: 'string', default: '0' },
      'require-200': { type: 'boolean', default: false },
      'port-offset': { type: 'string', default: '0' },
      report: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const o: Options = {
    duration: Number(values.duration),
    rounds: Number(values.rounds),
    scenarios: list(values.scenarios),
    peers: list(values.peers),
    fulcrumArgs: values['fulcrum-args'],
    fulcrumPolicies: Number(values['fulcrum-policies']),
    require200: values['require-200'],
    portOffset: Number(values['port-offset']),
    report: values.report,
    help: values.help,
  };
  if (!Number.isInteger(o.duration) || o.duration < 1) throw new Error(`--duration: a whole number of seconds ≥ 1, not ${values.duration}`);
  if (!Number.isInteger(o.rounds) || o.rounds < 1) throw new Error(`--rounds: a whole number ≥ 1, not ${values.rounds}`);
  if (!Number.isInteger(o.fulcrumPolicies) || o.fulcrumPolicies < 0 || o.fulcrumPolicies > 10_000) {
    throw new Error(`--fulcrum-policies: a whole number of rules from 0 to 10000, not ${values['fulcrum-policies']}`);
  }
  if (!Number.isInteger(o.portOffset) || o.portOffset < -10000 || o.portOffset > 40000) {
    throw new Error(`--port-offset: a whole number from -10000 to 40000, not ${values['port-offset']}`);
  }
  for (const s of o.scenarios) {
    if (!/^(ka|close|tls-ka|tls-hs|tcp-ka)[1-9]\d*$/.test(s) && !['bulk', 'tcp-bulk', 'idle10k'].includes(s)) throw new Error(`--scenarios: unknown scenario ${s}`);
  }
  for (const p of o.peers) {
    if (!(PEERS as readonly string[]).includes(p)) throw new Error(`--peers: unknown peer ${p} (known: ${PEERS.join(', ')})`);
  }
  if (o.scenarios.length === 0 || o.peers.length === 0) throw new Error('--scenarios and --peers must not be empty');
  return o;
}
