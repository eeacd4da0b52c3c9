// Rows → markdown: one table per scenario (medians over rounds, ratios to HAProxy), then the targets.
// Ratios are the point: absolute numbers move with the machine's load from run to run.
import type { HandshakeCount } from './tls.ts';

/** One measurement. Which fields are set depends on the scenario. */
export interface Row {
  peer: string;
  scenario: string;
  round: number;
  elapsed_s?: number;
  proxy_cpu_pct?: number | null;
  origin_cpu_pct?: number;
  /** wrk's own CPU over the run (wrk scenarios) */
  client_cpu_pct?: number | null;
  proxy_rss_kb?: number | null;
  tcp_active_opens?: number;
  // wrk (wrk-json.lua)
  requests?: number;
  duration_us?: number;
  err_connect?: number;
  err_read?: number;
  err_write?: number;
  err_status?: number;
  err_timeout?: number;
  p50_us?: number;
  p99_us?: number;
  // bulk
  http_code?: number;
  bytes?: number;
  mb_per_s?: number;
  complete?: boolean;
  // idle10k
  conns?: number;
  opened?: number;
  establish_ms?: number;
  closed_by_peer?: number;
  answered_2xx?: number;
  non2xx?: number;
  errors?: number;
  still_open?: number;
  rss_before_kb?: number;
  rss_after_kb?: number;
  growth_mb?: number;
}

export interface ReportMeta {
  /** Status of Fulcrum's first answer on `/`, if it ran. */
  fulcrumStartStatus?: number;
  /** With tls-* scenarios: per peer, what the resumption probe saw (tls.ts, probeResumption). */
  tlsProbe?: Record<string, HandshakeCount>;
}

const REF = 'haproxy';
const FULCRUM = 'fulcrum';

function median(xs: (number | null | undefined)[]): number {
  const s = xs.filter((x): x is number => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
const sum = (xs: (number | undefined)[]) => xs.reduce<number>((a, x) => a + (x ?? 0), 0);
const ok = (x: number) => Number.isFinite(x);
const f0 = (x: number) => (ok(x) ? Math.round(x).toLocaleString('en-US') : 'n/a');
const f1 = (x: number) => (ok(x) ? x.toFixed(1) : 'n/a');
const f2 = (x: number) => (ok(x) ? x.toFixed(2) : 'n/a');
const ms = (us: number) => (ok(us) ? (us / 1000).toFixed(2) : 'n/a');
const mb = (kb: number) => (ok(kb) ? (kb / 1024).toFixed(1) : '-');

/** The 1 GiB downloads: through the HTTP listener, or through the layer 4 one. */
const isBulk = (sc: string) => sc === 'bulk' || sc === 'tcp-bulk';
/** Through the layer 4 listeners: HAProxy's mode tcp frontend, Fulcrum's TCP listener. */
const isTcp = (sc: string) => sc.startsWith('tcp-');

const rps = (r: Row) => (r.requests ?? 0) / ((r.duration_us ?? 1) / 1e6);
/** Connection-level failures seen by wrk (not counting HTTP statuses). */
const sockErrors = (r: Row) => sum([r.err_connect, r.err_read, r.err_write, r.err_timeout]);
/** Non-2xx answers: wrk's status errors (status ≥ 400), bulk's non-2xx code, idle10k's count. */
const non2xx = (r: Row) => (isBulk(r.scenario) || r.scenario === 'idle10k' ? (r.non2xx ?? 0) : (r.err_status ?? 0));

/** The proxy's CPU time over the run divided by the requests wrk counted in it. */
function cpuUsPerReq(r: Row): number {
  if (typeof r.proxy_cpu_pct !== 'number' || !r.requests || r.elapsed_s === undefined) return NaN;
  return ((r.proxy_cpu_pct / 100) * r.elapsed_s * 1e6) / r.requests;
}

/** Per (scenario, peer) summary over rounds. */
interface Stat {
  n: number;
  value: number; // req/s, MB/s or RSS growth MB: the scenario's headline number
  min: number;
  max: number;
  p50: number;
  p99: number;
  cpu: number;
  /** proxy CPU time per request, µs: less sensitive than req/s to how the 2 cores are shared */
  cpuUsPerReq: number;
  clientCpu: number;
  rssKb: number;
  connPerReq: number;
  non2xx: number;
  errors: number;
  requests: number;
  incomplete: number;
  rows: Row[];
}

function headline(r: Row): number {
  if (isBulk(r.scenario)) return r.mb_per_s ?? NaN;
  if (r.scenario === 'idle10k') return r.growth_mb ?? NaN;
  return rps(r);
}

function stat(rows: Row[]): Stat {
  const v = rows.map(headline);
  return {
    n: rows.length,
    value: median(v),
    min: Math.min(...v),
    max: Math.max(...v),
    p50: median(rows.map((r) => r.p50_us)),
    p99: median(rows.map((r) => r.p99_us)),
    cpu: median(rows.map((r) => r.proxy_cpu_pct)),
    cpuUsPerReq: median(rows.map(cpuUsPerReq)),
    clientCpu: median(rows.map((r) => r.client_cpu_pct)),
    rssKb: median(rows.map((r) => r.proxy_rss_kb)),
    connPerReq: median(rows.map((r) => (r.requests ? (r.tcp_active_opens ?? NaN) / r.requests : NaN))),
    non2xx: sum(rows.map(non2xx)),
    errors: sum(rows.map((r) => (r.scenario === 'idle10k' ? (r.errors ?? 0) : sockErrors(r)))),
    requests: sum(rows.map((r) => (r.scenario === 'idle10k' ? r.conns : r.requests))),
    incomplete: rows.filter((r) => isBulk(r.scenario) && !r.complete).length,
    rows,
  };
}

type Stats = Map<string, Map<string, Stat>>; // scenario → peer → stat

function collect(rows: Row[]): Stats {
  const out: Stats = new Map();
  for (const r of rows) {
    if (!out.has(r.scenario)) out.set(r.scenario, new Map());
    const byPeer = out.get(r.scenario)!;
    byPeer.set(r.peer, stat([...(byPeer.get(r.peer)?.rows ?? []), r]));
  }
  return out;
}

const isTls = (sc: string) => sc.startsWith('tls-');
const isHandshake = (sc: string) => sc.startsWith('tls-hs');

function title(sc: string): string {
  const m = /^(ka|close|tls-ka|tls-hs|tcp-ka)(\d+)$/.exec(sc);
  if (m?.[1] === 'ka') return `wrk -t1 -c${m[2]}, keep-alive`;
  if (m?.[1] === 'close') return `wrk -t1 -c${m[2]} -H 'Connection: close' (a new connection per request)`;
  if (m?.[1] === 'tls-ka') return `wrk -t1 -c${m[2]} https://…/, keep-alive over TLS`;
  if (m?.[1] === 'tls-hs') return `wrk -t1 -c${m[2]} -H 'Connection: close' https://…/ (a new TLS connection per request: req/s = handshakes/s)`;
  if (m?.[1] === 'tcp-ka') return `wrk -t1 -c${m[2]}, keep-alive, through the layer 4 listener (the proxy relays bytes)`;
  if (sc === 'bulk') return 'one GET of /big (1 GiB), single stream, curl -o /dev/null';
  if (sc === 'tcp-bulk') return 'one GET of /big (1 GiB), single stream, curl -o /dev/null, through the layer 4 listener (the proxy relays bytes)';
  if (sc === 'idle10k') return '10,000 idle keep-alive client connections: proxy RSS growth';
  return sc;
}

function table(sc: string, byPeer: Map<string, Stat>, meta: ReportMeta): string[] {
  const ref = byPeer.get(REF);
  const ratio = (a: number, b: number | undefined) => (b !== undefined && ok(b) && b !== 0 ? f2(a / b) : 'n/a');
  const out = [`### ${sc}: ${title(sc)}`, ''];
  if (isBulk(sc)) {
    out.push('| peer | MB/s (median of n) | min–max | ×HAProxy | proxy CPU % | RSS MB | non-2xx |', '|---|--:|--:|--:|--:|--:|--:|');
    for (const [peer, s] of byPeer) {
      const short = s.incomplete ? ` (${s.incomplete} incomplete)` : '';
      out.push(`| ${peer} | ${f0(s.value)} (${s.n}) | ${f0(s.min)}–${f0(s.max)} | ${ratio(s.value, ref?.value)} | ${peer === 'direct' ? '-' : f1(s.cpu)} | ${mb(s.rssKb)} | ${s.non2xx}${short} |`);
    }
    if (isTcp(sc)) out.push('', tcpNote(byPeer));
  } else if (sc === 'idle10k') {
    out.push(
      '| peer | RSS before MB | RSS after MB | growth MB (median of n) | ×HAProxy | KB/conn | 2xx | non-2xx | errors | still open |',
      '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
    );
    for (const [peer, s] of byPeer) {
      const r = s.rows;
      const perConn = (s.value * 1024) / median(r.map((x) => x.conns));
      out.push(
        `| ${peer} | ${mb(median(r.map((x) => x.rss_before_kb)))} | ${mb(median(r.map((x) => x.rss_after_kb)))} | ${f1(s.value)} (${s.n}) | ${ratio(s.value, ref?.value)} | ${f1(perConn)} | ` +
          `${f0(median(r.map((x) => x.answered_2xx)))} | ${s.non2xx} | ${s.errors} | ${f0(median(r.map((x) => x.still_open)))} |`,
      );
    }
  } else {
    const unit = isHandshake(sc) ? 'handshakes/s' : 'req/s';
    const per = isHandshake(sc) ? 'handshake' : 'req';
    out.push(
      `| peer | ${unit} (median of n) | min–max | ×HAProxy | p50 ms | p99 ms | p99 ×HAProxy | proxy CPU % | CPU µs/${per} | CPU/${per} ×HAProxy | wrk CPU % | RSS MB | conn/req | non-2xx | socket errors |`,
      '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
    );
    for (const [peer, s] of byPeer) {
      const proxy = peer !== 'direct';
      out.push(
        `| ${peer} | ${f0(s.value)} (${s.n}) | ${f0(s.min)}–${f0(s.max)} | ${ratio(s.value, ref?.value)} | ${ms(s.p50)} | ${ms(s.p99)} | ${ratio(s.p99, ref?.p99)} | ` +
          `${proxy ? f1(s.cpu) : '-'} | ${proxy ? f1(s.cpuUsPerReq) : '-'} | ${proxy ? ratio(s.cpuUsPerReq, ref?.cpuUsPerReq) : '-'} | ${f1(s.clientCpu)} | ` +
          `${mb(s.rssKb)} | ${f2(s.connPerReq)} | ${f0(s.non2xx)} | ${f0(s.errors)} |`,
      );
    }
    if (isTls(sc)) out.push('', ...tlsNotes(sc, byPeer, meta));
    if (isTcp(sc)) out.push('', tcpNote(byPeer));
  }
  out.push('');
  return out;
}

/** Below a layer 4 table: which listeners were measured, so that ×HAProxy reads right. */
function tcpNote(byPeer: Map<string, Stat>): string {
  return (
    'Layer 4: HAProxy\'s `mode tcp` frontend (same process and threads as its HTTP one) and Fulcrum\'s `TCP` listener, each relaying bytes ' +
    'over one origin connection per client connection (round robin over the same three origin ports); ×HAProxy is against that frontend.' +
    (byPeer.has('direct') ? ' `direct` is the origin itself, as in ka64 and bulk.' : '')
  );
}

/** Share of resumed handshakes in a probe, as "49 % of 1,234". */
function resumedShare(c: HandshakeCount): string {
  return `${c.handshakes ? Math.round((c.resumed / c.handshakes) * 100) : 0} % of ${f0(c.handshakes)}`;
}

/**
 * Peers whose share of resumed handshakes differs from HAProxy's by more than 10 points: then
 * tls-hs no longer compares the same work (a resumed handshake skips the certificate signature).
 */
export function unequalResumption(probe: Record<string, HandshakeCount> | undefined): string[] {
  const ref = probe?.[REF];
  if (!probe || !ref?.handshakes) return [];
  const share = (c: HandshakeCount) => c.resumed / c.handshakes;
  return Object.entries(probe).filter(([, c]) => c.handshakes > 0 && Math.abs(share(c) - share(ref)) > 0.1).map(([peer]) => peer);
}

/** Below a TLS table: what is not measured, what was negotiated, and how many handshakes resumed. */
function tlsNotes(sc: string, byPeer: Map<string, Stat>, meta: ReportMeta): string[] {
  const notes = [
    '`direct` is not measured over TLS: the origin speaks plain HTTP only. Both peers serve the same ECDSA P-256 certificate (signed by a bench CA), ' +
      'TLS 1.2–1.3, their default ciphers; HAProxy\'s session resumption is set to behave as Fulcrum\'s (bench/README.md, "TLS session resumption").',
  ];
  const probe = meta.tlsProbe;
  const peers = [...byPeer.keys()].filter((p) => probe?.[p]);
  if (probe && peers.length > 0) {
    const params = peers.map((p) => `${p}: ${Object.keys(probe[p]!.params).join(', ') || 'none seen'}`).join('; ');
    notes.push(`Negotiated with wrk: ${params}.`);
    if (isHandshake(sc)) {
      notes.push(
        `Resumed handshakes, seen by a 1 s wrk -c8 \`Connection: close\` probe before the rounds: ${peers.map((p) => `${p} ${resumedShare(probe[p]!)}`).join(', ')}. ` +
          'A resumed TLS 1.3 handshake skips the certificate and its signature.',
      );
      const odd = unequalResumption(probe);
      if (odd.length > 0) notes.push(`> **Unequal resumption** (${odd.join(', ')} vs ${REF}): this table compares different handshake mixes.`);
    }
  }
  return notes.flatMap((n) => [n, '']).slice(0, -1); // paragraphs
}

interface Target {
  scenario: string;
  what: string;
  /** 'min': value ≥ limit; 'max': value ≤ limit. */
  bound: 'min' | 'max';
  limit: number;
  unit: string;
  value: (f: Stat, ref: Stat | undefined) => number;
}

const vsRef = (pick: (s: Stat) => number) => (f: Stat, ref: Stat | undefined) => (ref ? pick(f) / pick(ref) : NaN);

export const TARGETS: Target[] = [
  ...['ka64', 'ka256', 'close64'].map((scenario): Target => ({ scenario, what: 'req/s vs HAProxy', bound: 'min', limit: 0.35, unit: '×', value: vsRef((s) => s.value) })),
  ...['ka64', 'ka256', 'close64'].map((scenario): Target => ({ scenario, what: 'p99 vs HAProxy', bound: 'max', limit: 3, unit: '×', value: vsRef((s) => s.p99) })),
  { scenario: 'bulk', what: 'MB/s vs HAProxy', bound: 'min', limit: 0.6, unit: '×', value: vsRef((s) => s.value) },
  // Layer 4 (issue 6): against HAProxy's mode tcp frontend; a bare Node pipe reached 0.55× and 0.65× on this box.
  { scenario: 'tcp-ka64', what: 'req/s vs HAProxy mode tcp', bound: 'min', limit: 0.7, unit: '×', value: vsRef((s) => s.value) },
  { scenario: 'tcp-bulk', what: 'MB/s vs HAProxy mode tcp', bound: 'min', limit: 0.7, unit: '×', value: vsRef((s) => s.value) },
  { scenario: 'idle10k', what: 'RSS growth', bound: 'max', limit: 150, unit: ' MB', value: (f) => f.value },
];

function fmt(x: number, unit: string): string {
  return unit === '×' ? `${f2(x)}×` : `${f1(x)}${unit}`;
}

/** "PASS"/"MISS" with the margin. A run with failed answers is never a PASS: a fast error is not a result. */
function judge(t: Target, byPeer: Map<string, Stat> | undefined): string {
  const f = byPeer?.get(FULCRUM);
  if (!f) return `n/a (no ${FULCRUM} rows)`;
  const v = t.value(f, byPeer?.get(REF));
  if (!ok(v)) return `n/a (no ${REF} rows)`;
  const pass = t.bound === 'min' ? v >= t.limit : v <= t.limit;
  const diff = t.bound === 'min' ? v - t.limit : t.limit - v;
  const rel = Math.abs(diff / t.limit) * 100;
  const margin = `${fmt(v, t.unit)} vs ${t.bound === 'min' ? '≥' : '≤'} ${fmt(t.limit, t.unit)}: ${pass ? 'margin' : 'short by'} ${fmt(Math.abs(diff), t.unit)} (${rel.toFixed(0)} %)`;
  const invalid: string[] = [];
  if (f.non2xx > 0) invalid.push(`${f0(f.non2xx)} non-2xx`);
  if (f.errors > Math.max(0, f.requests * 0.001)) invalid.push(`${f0(f.errors)} errors`);
  if (f.incomplete > 0) invalid.push(`${f.incomplete} incomplete download(s)`);
  if (invalid.length > 0) return `**MISS** (invalid: ${invalid.join(', ')}; the number would be ${margin})`;
  return `${pass ? 'PASS' : '**MISS**'} ${margin}`;
}

export function renderReport(rows: Row[], meta: ReportMeta = {}): string {
  const stats = collect(rows);
  const out: string[] = [];
  if (meta.fulcrumStartStatus !== undefined && meta.fulcrumStartStatus !== 200) {
    out.push(
      `> **Fulcrum answered ${meta.fulcrumStartStatus} on \`/\` at start, not 200**: its rows measure error answers, not forwarding ` +
        '(until HTTP forwarding lands its listeners answer 503). Those answers are counted as non-2xx, and no target can pass.',
      '',
    );
  }
  for (const [sc, byPeer] of stats) out.push(...table(sc, byPeer, meta));
  const targets = TARGETS.filter((t) => stats.has(t.scenario));
  if (targets.length > 0) out.push('### targets (Fulcrum)', '', '| scenario | target | result |', '|---|---|---|');
  for (const t of targets) {
    out.push(`| ${t.scenario} | ${t.what} ${t.bound === 'min' ? '≥' : '≤'} ${fmt(t.limit, t.unit)} | ${judge(t, stats.get(t.scenario))} |`);
  }
  out.push(
    ...(targets.length > 0 ? [''] : []),
    'Medians over rounds. ×HAProxy = peer / HAProxy in the same run. proxy CPU % = utime+stime of the proxy\'s process tree over the run ' +
      '(100 % = one core); CPU µs/req = that CPU time per request wrk counted (per round, then the median); wrk CPU % = wrk\'s own, the same way. ' +
      'RSS = its summed VmRSS at the end of the run. conn/req = TCP connects on the whole box per request ' +
      '(0 = connections reused; 1 = one per request). non-2xx: wrk counts answers with status ≥ 400 (no peer sends 3xx here).',
  );
  return out.join('\n');
}
