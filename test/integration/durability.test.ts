import assert from 'node:assert/strict';
import { it } from 'node:test';
import { ApiClient, tempDir } from '../helpers/fulcrum.ts';
import { spawnFulcrum } from '../helpers/process.ts';

const TOKEN = 'durability-token-0123456789';
const WRITERS = 4;
const KILL_AFTER_ACKS = 150;
const MAX_WRITES_PER_WRITER = 500; // bounded even if the kill never came

it('no acknowledged write is lost when the process is killed with SIGKILL mid-stream', async () => {
  const dir = tempDir('fulcrum-durability-');
  const env = { FULCRUM_DATA_DIR: dir.path, FULCRUM_ADMIN_TOKEN: TOKEN };
  let fl = await spawnFulcrum(env);
  try {
    const api = new ApiClient(`http://127.0.0.1:${fl.port}`, TOKEN);
    /** pool_id → the highest version a 2xx answer reported. */
    const acked = new Map<string, number>();
    let acks = 0;
    let killed = false;
    const ack = (id: string, version: number) => {
      acked.set(id, Math.max(acked.get(id) ?? 0, version));
      acks++;
      if (acks >= KILL_AFTER_ACKS && !killed) {
        killed = true;
        fl.child.kill('SIGKILL'); // while the other writers still have requests in flight
      }
    };

    // Each writer creates a pool and then patches it, over and over, until the process dies.
    const writer = async (w: number) => {
      for (let n = 0; n < MAX_WRITES_PER_WRITER && !killed; n++) {
        try {
          const created = await api.post('/api/v1/pools', { name: `writer ${w} pool ${n}` });
          if (created.status !== 201) throw new Error(`create answered ${created.status}`);
          ack(created.body.pool_id, created.body.version);
          const patched = await api.patch(`/api/v1/pools/${created.body.pool_id}`, { retries: 1 });
          if (patched.status !== 200) throw new Error(`patch answered ${patched.status}`);
          ack(patched.body.pool_id, patched.body.version);
        } catch (err) {
          if (killed) return; // the connection died with the process: that write was never acknowledged
          throw err;
        }
      }
    };
    await Promise.all(Array.from({ length: WRITERS }, (_, w) => writer(w)));
    assert.ok(killed, 'the process was killed mid-stream');
    const exit = await fl.exited;
    assert.equal(exit.signal, 'SIGKILL');

    fl = await spawnFulcrum(env);
    const after = new ApiClient(`http://127.0.0.1:${fl.port}`, TOKEN);
    const missing: string[] = [];
    for (const [id, version] of acked) {
      const res = await after.get(`/api/v1/pools/${id}`);
      if (res.status !== 200 || res.body.version < version) missing.push(`${id}@${version} → ${res.status} v${res.body?.version}`);
    }
    assert.deepEqual(missing, [], `acknowledged writes lost after SIGKILL (${acked.size} pools, ${acks} acks)`);
    const revision = Number(/"revision":(\d+)[^\n]*"msg":"fulcrum started"/.exec(fl.stdout())?.[1]);
    assert.ok(revision >= acks, `revision ${revision} covers the ${acks} acknowledged writes`);
  } finally {
    await fl.kill();
    dir.remove();
  }
});
