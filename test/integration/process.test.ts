import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { request } from 'node:http';
import { connect, createServer } from 'node:net';
import { describe, it } from 'node:test';
import { ApiClient, freePort, tempDir } from '../helpers/fulcrum.ts';
import { type FulcrumProcess, runFulcrum, spawnFulcrum } from '../helpers/process.ts';

const TOKEN = 'process-test-token-0123456789';

describe('the fulcrum process', () => {
  it('stops start-up on a bad setting with a message naming it (exit 2)', async () => {
    const bad = await runFulcrum(['serve'], { FULCRUM_API_ADDR: 'nowhere' });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /configuration error: FULCRUM_API_ADDR: 'nowhere' is not host:port/);
    const flag = await runFulcrum(['serve', '--log-level', 'chatty'], {});
    assert.equal(flag.code, 2);
    assert.match(flag.stderr, /--log-level: 'chatty' is not one of/);
    const unknown = await runFulcrum(['launch'], {});
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown command 'launch'/);
  });

  it('says so when the API address is taken (exit 1)', async () => {
    const dir = tempDir();
    const first = await spawnFulcrum({ FULCRUM_DATA_DIR: dir.path, FULCRUM_ADMIN_TOKEN: TOKEN });
    try {
      const second = await runFulcrum(['serve'], { FULCRUM_API_ADDR: `127.0.0.1:${first.port}`, FULCRUM_DATA_DIR: dir.path + '-second', FULCRUM_ADMIN_TOKEN: TOKEN });
      assert.equal(second.code, 1);
      assert.match(second.stderr, new RegExp(`FULCRUM_API_ADDR 127.0.0.1:${first.port} is already in use`));
    } finally {
      await first.kill();
      dir.remove();
      rmSync(dir.path + '-second', { recursive: true, force: true });
    }
  });

  it('prints a generated admin token once, on the first start only, and it works', async () => {
    const dir = tempDir();
    const started: FulcrumProcess[] = [];
    try {
      // A first start that fails (its API port is taken) must not use up the token.
      const squatter = createServer();
      await new Promise<void>((resolve) => squatter.listen({ host: '127.0.0.1', port: 0 }, () => resolve()));
      const taken = (squatter.address() as { port: number }).port;
      const failed = await runFulcrum(['serve'], { FULCRUM_DATA_DIR: dir.path, FULCRUM_API_ADDR: `127.0.0.1:${taken}` });
      await new Promise<void>((resolve) => squatter.close(() => resolve()));
      assert.equal(failed.code, 1);
      assert.match(failed.stderr, /is already in use/);
      const first = await spawnFulcrum({ FULCRUM_DATA_DIR: dir.path });
      started.push(first);
      const token = (await first.waitFor('stderr', /Bearer <token>/)) && /(flc_[A-Za-z0-9_-]{43})/.exec(first.stderr())?.[1];
      assert.ok(token, `a token on stderr: ${first.stderr()}`);
      const api = new ApiClient(`http://127.0.0.1:${first.port}`, token);
      assert.equal((await api.get('/api/v1/pools')).status, 200);
      first.child.kill('SIGTERM');
      assert.deepEqual(await first.exited, { code: 0, signal: null });
      assert.ok(!first.stdout().includes(token), 'the token never reaches the JSON log stream');

      const second = await spawnFulcrum({ FULCRUM_DATA_DIR: dir.path });
      started.push(second);
      assert.equal((await new ApiClient(`http://127.0.0.1:${second.port}`, token).get('/api/v1/pools')).status, 200);
      second.child.kill('SIGINT');
      assert.deepEqual(await second.exited, { code: 0, signal: null });
      assert.doesNotMatch(second.stderr(), /flc_/, 'printed on the first start only');
    } finally {
      for (const p of started) await p.kill();
      dir.remove();
    }
  });

  it('on SIGTERM stops accepting, lets an in-flight request finish, and exits 0', async () => {
    const dir = tempDir();
    const fl = await spawnFulcrum({ FULCRUM_DATA_DIR: dir.path, FULCRUM_ADMIN_TOKEN: TOKEN });
    try {
      const api = new ApiClient(`http://127.0.0.1:${fl.port}`, TOKEN);
      const { body: lb } = await api.post('/api/v1/load-balancers', { name: 'edge' });
      const listenerPort = await freePort();
      assert.equal((await api.post(`/api/v1/load-balancers/${lb.lb_id}/listeners`, { name: 'web', protocol: 'HTTP', bind_address: '127.0.0.1', port: listenerPort })).status, 201);

      // An in-flight write: headers sent, body held back until after the signal.
      const body = JSON.stringify({ name: 'late pool' });
      const inFlight = new Promise<{ status: number; body: string; connection: string | undefined }>((resolve, reject) => {
        const req = request({
          host: '127.0.0.1', port: fl.port, method: 'POST', path: '/api/v1/pools',
          headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        }, (res) => {
          let text = '';
          res.setEncoding('utf8').on('data', (d: string) => (text += d)).on('end', () => resolve({ status: res.statusCode!, body: text, connection: res.headers.connection }));
        });
        req.on('error', reject);
        req.flushHeaders();
        // Once the server has the request head, signal; once it logs shutting down, send the body.
        fl.waitFor('stdout', /"method":"POST","url":"\/api\/v1\/pools"/)
          .then(() => {
            const shuttingDown = fl.waitFor('stdout', /shutting down/);
            fl.child.kill('SIGTERM');
            return shuttingDown;
          })
          .then(() => req.end(body), reject);
      });
      const res = await inFlight;
      assert.equal(res.status, 201, res.body);
      assert.equal(JSON.parse(res.body).pool_id, 'pool-late');
      assert.equal(res.connection, 'close', 'a response finished during shutdown does not keep its connection');
      assert.deepEqual(await fl.exited, { code: 0, signal: null });
      // Listeners are closed too.
      await assert.rejects(new Promise((resolve, reject) => connect(listenerPort, '127.0.0.1').on('connect', resolve).on('error', reject)), /ECONNREFUSED/);
    } finally {
      await fl.kill();
      dir.remove();
    }
  });

  it('cuts a request that outlives the shutdown deadline and still exits 0', async () => {
    const dir = tempDir();
    const fl = await spawnFulcrum({ FULCRUM_DATA_DIR: dir.path, FULCRUM_ADMIN_TOKEN: TOKEN, FULCRUM_SHUTDOWN_TIMEOUT_MS: '300' });
    try {
      const stuck = connect(fl.port, '127.0.0.1');
      await new Promise((resolve) => stuck.once('connect', resolve));
      stuck.write(`POST /api/v1/pools HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{`);
      const closed = new Promise((resolve) => stuck.once('close', resolve));
      stuck.on('error', () => undefined).resume();
      // Signal only once the request is in flight (its head parsed, its body still missing).
      await fl.waitFor('stdout', /"msg":"incoming request"/);
      fl.child.kill('SIGTERM');
      assert.deepEqual(await fl.exited, { code: 0, signal: null });
      await closed;
    } finally {
      await fl.kill();
      dir.remove();
    }
  });

  it('a restart brings back every resource exactly: ids, versions, revision, bound listeners', async () => {
    const dir = tempDir();
    const env = { FULCRUM_DATA_DIR: dir.path, FULCRUM_ADMIN_TOKEN: TOKEN };
    let fl = await spawnFulcrum(env);
    try {
      let api = new ApiClient(`http://127.0.0.1:${fl.port}`, TOKEN);
      const { body: lb } = await api.post('/api/v1/load-balancers', { name: 'edge', tags: { a: 'b' } });
      const { body: pool } = await api.post('/api/v1/pools', { name: 'API Production Pool', algorithm: 'RANDOM', health_check: { protocol: 'TCP' } });
      const { body: backend } = await api.post(`/api/v1/pools/${pool.pool_id}/backends`, { ip_address: '127.0.0.1', port: 9000, metadata: { zone: 'a' } });
      await api.patch(`/api/v1/pools/${pool.pool_id}/backends/${backend.server_id}`, { weight: 7 });
      await api.patch(`/api/v1/pools/${pool.pool_id}/backends/${backend.server_id}`, { admin_status: 'DISABLED' });
      const listenerPort = await freePort();
      const { body: listener } = await api.post(`/api/v1/load-balancers/${lb.lb_id}/listeners`, {
        name: 'web', protocol: 'HTTP', bind_address: '127.0.0.1', port: listenerPort, default_pool_id: pool.pool_id,
      });
      const paths = [
        `/api/v1/load-balancers/${lb.lb_id}`,
        `/api/v1/pools/${pool.pool_id}`,
        `/api/v1/pools/${pool.pool_id}/backends/${backend.server_id}`,
        `/api/v1/load-balancers/${lb.lb_id}/listeners/${listener.listener_id}`,
      ];
      const before = await Promise.all(paths.map(async (p) => (await api.get(p)).body));
      fl.child.kill('SIGTERM');
      await fl.exited;

      fl = await spawnFulcrum(env);
      api = new ApiClient(`http://127.0.0.1:${fl.port}`, TOKEN);
      const afterRestart = await Promise.all(paths.map(async (p) => (await api.get(p)).body));
      // uptime and similar live fields of a backend may differ; the configuration must not.
      for (const [i, b] of before.entries()) {
        const a = afterRestart[i];
        for (const key of Object.keys(b)) {
          if (['uptime_seconds', 'effective_weight', 'last_health_check'].includes(key)) continue;
          assert.deepEqual(a[key], b[key], `${paths[i]} ${key}`);
        }
      }
      const revisionAfter = Number(/"revision":(\d+)[^\n]*"msg":"fulcrum started"/.exec(fl.stdout())?.[1]);
      assert.equal(revisionAfter, 6, 'six writes, six revisions, all back');
      const ready = await fetch(`http://127.0.0.1:${fl.port}/ready`);
      assert.equal(ready.status, 200, 'the listener is bound again');
      // Bound and serving again; its only backend is still DISABLED, so no backend is usable.
      const res = await fetch(`http://127.0.0.1:${listenerPort}/`);
      assert.equal(res.status, 503);
      await res.text();
    } finally {
      await fl.kill();
      dir.remove();
    }
  });
});
