/**
 * UDP listeners, through the real API and real sockets on loopback: node's own DNS resolver through
 * a listener to DNS servers the test runs, many concurrent clients, idle expiry, a backend whose
 * port is closed (ICMP port unreachable), removed backends, the access list and connection_limit.
 *
 * UDP gives no event for a datagram that was dropped; a drop is awaited through the metric that
 * counts it (counted as the datagram arrives, so once counted it was never forwarded).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { Resolver } from 'node:dns/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { AUTHORITATIVE_ANSWER, decode, encode } from 'dns-packet';
import { startTestFulcrum, type TestFulcrum } from '../helpers/fulcrum.ts';

let t: TestFulcrum;
const sockets: Socket[] = [];

before(async () => {
  t = await startTestFulcrum();
});
after(async () => {
  for (const s of sockets) s.close();
  await t.close();
});

/** A UDP socket bound on 127.0.0.1 port 0, closed after the tests unless closed before. */
async function bound(): Promise<Socket> {
  const socket = createSocket('udp4');
  sockets.push(socket);
  await new Promise<void>((resolve) => socket.bind({ address: '127.0.0.1', port: 0 }, () => resolve()));
  return socket;
}

function portOf(socket: Socket): number {
  return (socket.address() as AddressInfo).port;
}

async function close(socket: Socket): Promise<void> {
  sockets.splice(sockets.indexOf(socket), 1);
  await new Promise<void>((resolve) => socket.close(() => resolve()));
}

/** A UDP port that was free a moment ago (listeners need a fixed port; a closed one refuses). */
async function freeUdpPort(): Promise<number> {
  const s = await bound();
  const port = portOf(s);
  await close(s);
  return port;
}

interface UdpBackend {
  name: string;
  port: number;
  /** Every datagram received: its text and the source port (one per session, each with its own socket). */
  seen: { text: string; from: number }[];
}

/** Echoes every datagram back prefixed with its name: `<name>:<text>`. */
async function echoBackend(name: string): Promise<UdpBackend> {
  const socket = await bound();
  const seen: UdpBackend['seen'] = [];
  socket.on('message', (msg: Buffer, rinfo: RemoteInfo) => {
    seen.push({ text: msg.toString(), from: rinfo.port });
    socket.send(`${name}:${msg.toString()}`, rinfo.port, rinfo.address);
  });
  return { name, port: portOf(socket), seen };
}

/** A DNS server answering every A question with `address` (dns-packet decodes and encodes). */
async function dnsBackend(name: string, address: string): Promise<UdpBackend> {
  const socket = await bound();
  const seen: UdpBackend['seen'] = [];
  socket.on('message', (msg: Buffer, rinfo: RemoteInfo) => {
    const query = decode(msg);
    const question = query.questions?.[0];
    seen.push({ text: question?.name ?? '', from: rinfo.port });
    const answers = question?.type === 'A' ? [{ type: 'A' as const, class: 'IN' as const, name: question.name, ttl: 60, data: address }] : [];
    socket.send(encode({ type: 'response', id: query.id, flags: AUTHORITATIVE_ANSWER, questions: query.questions, answers }), rinfo.port, rinfo.address);
  });
  return { name, port: portOf(socket), seen };
}

interface UdpLb {
  port: number;
  poolId: string;
  lbId: string;
  listenerId: string;
  /** server_id per backend port, in the order given. */
  backendIds: string[];
  listenerPath: string;
}

/** Pool → backends → load balancer → UDP listener, through the API as an operator would. */
async function setupUdp(backendPorts: number[], listener: Record<string, unknown> = {}): Promise<UdpLb> {
  const suffix = Math.random().toString(36).slice(2, 8);
  const pool = await t.api.post('/api/v1/pools', { name: `udp-${suffix}` });
  assert.equal(pool.status, 201, JSON.stringify(pool.body));
  const poolId: string = pool.body.pool_id;
  const backendIds: string[] = [];
  for (const port of backendPorts) {
    const b = await t.api.post(`/api/v1/pools/${poolId}/backends`, { ip_address: '127.0.0.1', port });
    assert.equal(b.status, 201, JSON.stringify(b.body));
    backendIds.push(b.body.server_id);
  }
  const lb = await t.api.post('/api/v1/load-balancers', { name: `udp-${suffix}` });
  assert.equal(lb.status, 201, JSON.stringify(lb.body));
  const port = await freeUdpPort();
  const l = await t.api.post(`/api/v1/load-balancers/${lb.body.lb_id}/listeners`, {
    name: `udp-${suffix}`,
    protocol: 'UDP',
    bind_address: '127.0.0.1',
    port,
    default_pool_id: poolId,
    ...listener,
  });
  assert.equal(l.status, 201, JSON.stringify(l.body));
  assert.equal(l.body.status, 'ACTIVE', JSON.stringify(l.body));
  const listenerId: string = l.body.listener_id;
  return { port, poolId, lbId: lb.body.lb_id, listenerId, backendIds, listenerPath: `/api/v1/load-balancers/${lb.body.lb_id}/listeners/${listenerId}` };
}

/** The sum of every series of `name` whose labels include `labels`. */
async function metric(name: string, labels: Record<string, string>): Promise<number> {
  const text = await (await fetch(`${t.api.base}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)\{([^}]*)\} (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...m[2]!.matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum += Number(m[3]);
  }
  return sum;
}

/** Polls until `check` holds (the metrics endpoint has no event to wait for). */
async function until(what: string | (() => string), check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${typeof what === 'string' ? what : what()}`);
    await delay(20); // the polling cadence, not a wait for an outcome
  }
}

async function metricIs(name: string, labels: Record<string, string>, value: number): Promise<void> {
  let last = NaN;
  await until(() => `${name}${JSON.stringify(labels)} = ${value} (last ${last})`, async () => (last = await metric(name, labels)) === value);
}

/** Sends `text` through the listener and waits for the reply. */
async function ask(client: Socket, port: number, text: string): Promise<string> {
  const reply = once(client, 'message');
  client.send(text, port, '127.0.0.1');
  const [msg] = (await reply) as [Buffer];
  return msg.toString();
}

describe('UDP listener', () => {
  it('answers DNS through the listener: round robin spreads new sessions, one session sticks to its backend', async () => {
    const a = await dnsBackend('dns-a', '10.0.0.1');
    const b = await dnsBackend('dns-b', '10.0.0.2');
    const lb = await setupUdp([a.port, b.port]);

    // A resolver of its own per query: a socket of its own, so each query is a new session.
    const answers: string[] = [];
    for (let i = 0; i < 4; i++) {
      const resolver = new Resolver({ timeout: 2000, tries: 1 });
      resolver.setServers([`127.0.0.1:${lb.port}`]);
      answers.push(...(await resolver.resolve4('app.test')));
    }
    assert.equal(answers.filter((x) => x === '10.0.0.1').length, 2, answers.join());
    assert.equal(answers.filter((x) => x === '10.0.0.2').length, 2, answers.join());
    assert.deepEqual([...a.seen, ...b.seen].map((s) => s.text), Array(4).fill('app.test'));

    // One client socket, several queries: one session, so one backend answers them all.
    const client = await bound();
    const replies: string[] = [];
    for (let id = 1; id <= 5; id++) {
      const reply = once(client, 'message');
      client.send(encode({ type: 'query', id, flags: 0, questions: [{ type: 'A', class: 'IN', name: `q${id}.app.test` }] }), lb.port, '127.0.0.1');
      const answer = decode(((await reply) as [Buffer])[0]);
      assert.equal(answer.id, id);
      const record = answer.answers?.[0];
      assert.ok(record?.type === 'A');
      replies.push(record.data);
    }
    assert.equal(new Set(replies).size, 1, replies.join());
    const sticky = replies[0] === '10.0.0.1' ? a : b;
    const forwarded = sticky.seen.filter((s) => s.text.startsWith('q'));
    assert.equal(forwarded.length, 5);
    assert.equal(new Set(forwarded.map((s) => s.from)).size, 1, 'one session: one socket toward the backend');
    assert.equal(await metric('fulcrum_udp_datagrams_total', { listener: lb.listenerId, direction: 'in' }), 9);
    assert.equal(await metric('fulcrum_udp_datagrams_total', { listener: lb.listenerId, direction: 'out' }), 9);
    assert.ok((await metric('fulcrum_bytes_in_total', { listener: lb.listenerId })) > 0);
    assert.ok((await metric('fulcrum_bytes_out_total', { listener: lb.listenerId })) > 0);
    assert.equal(await metric('fulcrum_connections_active', { listener: lb.listenerId }), 5);
  });

  it('200 concurrent clients each get their own reply; sessions are counted, then expire after idle_ms', async () => {
    const a = await echoBackend('a');
    const b = await echoBackend('b');
    const lb = await setupUdp([a.port, b.port]);
    const clients = await Promise.all(Array.from({ length: 200 }, () => bound()));
    const replies = await Promise.all(clients.map((c, i) => ask(c, lb.port, `hello-${i}`)));
    replies.forEach((r, i) => assert.match(r, new RegExp(`^[ab]:hello-${i}$`)));
    // Sessions open one by one as their first datagram arrives: round robin gives each backend half.
    assert.equal(a.seen.length, 100);
    assert.equal(b.seen.length, 100);
    assert.equal(new Set([...a.seen, ...b.seen].map((s) => s.from)).size, 200, 'a socket per session');

    assert.equal(await metric('fulcrum_connections_active', { listener: lb.listenerId }), 200);
    assert.equal(await metric('fulcrum_backend_active_connections', { pool: lb.poolId }), 200);
    assert.equal(await metric('fulcrum_udp_datagrams_total', { listener: lb.listenerId, direction: 'in' }), 200);
    assert.equal(await metric('fulcrum_udp_datagrams_total', { listener: lb.listenerId, direction: 'out' }), 200);
    const backend = await t.api.get(`/api/v1/pools/${lb.poolId}/backends/${lb.backendIds[0]}`);
    assert.equal(backend.body.active_connections, 100);

    // A shorter idle_ms applies to the sessions already open: the next sweep ends them all.
    const patched = await t.api.patch(lb.listenerPath, { timeouts: { idle_ms: 100 } });
    assert.equal(patched.status, 200, JSON.stringify(patched.body));
    await metricIs('fulcrum_connections_active', { listener: lb.listenerId }, 0);
    assert.equal(await metric('fulcrum_udp_sessions_total', { listener: lb.listenerId, result: 'ended_idle' }), 200);
    assert.equal(await metric('fulcrum_backend_active_connections', { pool: lb.poolId }), 0);
    await Promise.all(clients.map((c) => close(c)));
  });

  it('a backend whose port is closed: ECONNREFUSED ends the session, the next datagram picks the other backend', async () => {
    const live = await echoBackend('live');
    const deadPort = await freeUdpPort();
    const lb = await setupUdp([live.port, deadPort]);
    const dead = lb.backendIds[1]!;
    const refused = { listener: lb.listenerId, backend: dead, result: 'backend_error' };

    // Each new client socket is a new session, and round robin alternates: one of the first two meets the closed port.
    let victim: Socket | undefined;
    for (let i = 0; i < 2 && victim === undefined; i++) {
      const client = await bound();
      const got: string[] = [];
      client.on('message', (m: Buffer) => got.push(m.toString()));
      client.send(`try-${i}`, lb.port, '127.0.0.1');
      await until('a reply or a refused session', async () => got.length > 0 || (await metric('fulcrum_udp_sessions_total', refused)) > 0);
      if (got.length === 0) victim = client;
      else assert.deepEqual(got, [`live:try-${i}`]);
    }
    assert.ok(victim, 'the closed port was picked');
    assert.equal(await metric('fulcrum_udp_sessions_total', refused), 1);
    assert.equal(await metric('fulcrum_backend_active_connections', { backend: dead }), 0, 'its slot is free');
    // Same client address and port, new session, new pick.
    assert.equal(await ask(victim, lb.port, 'again'), 'live:again');

    // Passive health counts each refusal: at the third the backend is OFFLINE and new sessions avoid it.
    for (let i = 0; (await metric('fulcrum_udp_sessions_total', refused)) < 3; i++) {
      assert.ok(i < 10, 'round robin keeps picking the closed port until it is OFFLINE');
      const client = await bound();
      const got: string[] = [];
      client.on('message', (m: Buffer) => got.push(m.toString()));
      const before = await metric('fulcrum_udp_sessions_total', refused);
      client.send('more', lb.port, '127.0.0.1');
      await until('a reply or a refused session', async () => got.length > 0 || (await metric('fulcrum_udp_sessions_total', refused)) > before);
    }
    const view = await t.api.get(`/api/v1/pools/${lb.poolId}/backends/${dead}`);
    assert.equal(view.body.status, 'OFFLINE', JSON.stringify(view.body));
    for (let i = 0; i < 4; i++) assert.equal(await ask(await bound(), lb.port, `after-${i}`), `live:after-${i}`);
  });

  it('deleting a backend with ?force=true ends its sessions; their clients move to another backend', async () => {
    const a = await echoBackend('a');
    const b = await echoBackend('b');
    const lb = await setupUdp([a.port, b.port]);
    const clients = await Promise.all(Array.from({ length: 4 }, () => bound()));
    const first = await Promise.all(clients.map((c, i) => ask(c, lb.port, `one-${i}`)));
    const onA = clients.filter((_, i) => first[i]!.startsWith('a:'));
    const onB = clients.filter((_, i) => first[i]!.startsWith('b:'));
    assert.equal(onA.length, 2);

    const path = `/api/v1/pools/${lb.poolId}/backends/${lb.backendIds[0]}`;
    const refused = await t.api.delete(path);
    assert.equal(refused.status, 409, 'its sessions count as connections');
    const removed = await t.api.delete(`${path}?force=true`);
    assert.equal(removed.status, 200, JSON.stringify(removed.body));
    assert.equal(removed.body.connections_terminated, 2);
    assert.equal(await metric('fulcrum_udp_sessions_total', { listener: lb.listenerId, backend: lb.backendIds[0]!, result: 'terminated' }), 2);
    assert.equal(await metric('fulcrum_connections_active', { listener: lb.listenerId }), 2);

    for (const c of onA) assert.match(await ask(c, lb.port, 'two'), /^b:two$/);
    // The sessions on b were never touched: still one socket each toward b.
    const sourcesBefore = new Set(b.seen.map((s) => s.from)).size;
    for (const c of onB) assert.equal(await ask(c, lb.port, 'three'), 'b:three');
    assert.equal(new Set(b.seen.map((s) => s.from)).size, sourcesBefore);
  });

  it('an access list DENY drops datagrams, asked again at each one, and counts them refused', async () => {
    const a = await echoBackend('a');
    const lb = await setupUdp([a.port]);
    const acl = await t.api.post(`${lb.listenerPath}/access-list`, { network_items: [{ address: '127.0.0.1', type: 'DENY' }] });
    assert.equal(acl.status, 200, JSON.stringify(acl.body));
    const client = await bound();
    const refused = { listener: lb.listenerId, reason: 'access_list' };
    client.send('denied-1', lb.port, '127.0.0.1');
    await metricIs('fulcrum_connections_refused_total', refused, 1);
    client.send('denied-2', lb.port, '127.0.0.1');
    await metricIs('fulcrum_connections_refused_total', refused, 2);
    assert.equal(a.seen.length, 0);
    assert.equal(await metric('fulcrum_connections_active', { listener: lb.listenerId }), 0);

    const cleared = await t.api.delete(`${lb.listenerPath}/access-list`);
    assert.ok(cleared.status < 300, JSON.stringify(cleared.body));
    assert.equal(await ask(client, lb.port, 'allowed'), 'a:allowed');
  });

  it('connection_limit bounds the session table; sessions already open keep working', async () => {
    const a = await echoBackend('a');
    const lb = await setupUdp([a.port], { connection_limit: 2 });
    const [c1, c2, c3] = await Promise.all([bound(), bound(), bound()]);
    assert.equal(await ask(c1!, lb.port, '1'), 'a:1');
    assert.equal(await ask(c2!, lb.port, '2'), 'a:2');
    c3!.send('3', lb.port, '127.0.0.1');
    await metricIs('fulcrum_udp_sessions_total', { listener: lb.listenerId, result: 'table_full' }, 1);
    assert.deepEqual(a.seen.map((s) => s.text), ['1', '2']);
    assert.equal(await ask(c1!, lb.port, '1b'), 'a:1b');

    assert.equal((await t.api.patch(lb.listenerPath, { connection_limit: 3 })).status, 200);
    assert.equal(await ask(c3!, lb.port, '3b'), 'a:3b');
    assert.equal(await metric('fulcrum_connections_active', { listener: lb.listenerId }), 3);
  });

  it("a backend's max_connections counts sessions: a full backend takes no new one (no_backend)", async () => {
    const a = await echoBackend('a');
    const lb = await setupUdp([a.port]);
    assert.equal((await t.api.patch(`/api/v1/pools/${lb.poolId}/backends/${lb.backendIds[0]}`, { max_connections: 1 })).status, 200);
    const [c1, c2] = await Promise.all([bound(), bound()]);
    assert.equal(await ask(c1!, lb.port, '1'), 'a:1');
    c2!.send('2', lb.port, '127.0.0.1');
    await metricIs('fulcrum_udp_sessions_total', { listener: lb.listenerId, pool: lb.poolId, result: 'no_backend' }, 1);
    assert.deepEqual(a.seen.map((s) => s.text), ['1']);
    assert.equal(await ask(c1!, lb.port, '1b'), 'a:1b', 'the session holding the slot goes on');
  });

  it('a session keeps its backend across revisions; deleting the listener ends its sessions and frees their slots', async () => {
    const a = await echoBackend('a');
    const b = await echoBackend('b');
    const lb = await setupUdp([a.port]);
    const other = await t.api.post('/api/v1/pools', { name: `udp-other-${lb.listenerId}` });
    assert.equal((await t.api.post(`/api/v1/pools/${other.body.pool_id}/backends`, { ip_address: '127.0.0.1', port: b.port })).status, 201);
    const old = await bound();
    assert.equal(await ask(old, lb.port, 'x'), 'a:x');

    assert.equal((await t.api.patch(lb.listenerPath, { default_pool_id: other.body.pool_id })).status, 200);
    assert.equal(await ask(old, lb.port, 'y'), 'a:y', 'the open session stays with its backend');
    assert.equal(await ask(await bound(), lb.port, 'z'), 'b:z', 'a new session follows the new pool');

    const deleted = await t.api.delete(lb.listenerPath);
    assert.equal(deleted.status, 200, JSON.stringify(deleted.body));
    await metricIs('fulcrum_udp_sessions_total', { listener: lb.listenerId, result: 'closed' }, 2);
    assert.equal(await metric('fulcrum_connections_active', { listener: lb.listenerId }), 0);
    assert.equal(await metric('fulcrum_backend_active_connections', { pool: lb.poolId }), 0);
    assert.equal(await metric('fulcrum_backend_active_connections', { pool: other.body.pool_id }), 0);
  });
});
