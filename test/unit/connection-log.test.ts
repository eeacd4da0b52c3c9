/** Connection log files: a destination that cannot be written loses its lines, never the process. */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConnectionLog, logFilePath } from '../../src/observability/connection-log.ts';
import { tempDir } from '../helpers/fulcrum.ts';

const dir = tempDir();
after(() => dir.remove());

const line = { started: 1_000, ended: 1_250, listener: 'listener-a', protocol: 'TCP', client: '127.0.0.1', clientPort: 5000, backends: ['b1'], bytesIn: 3, bytesOut: 6, end: 'client_closed' };

describe('ConnectionLog', () => {
  it('keeps files inside <data_dir>/logs', () => {
    assert.equal(logFilePath(dir.path, 'a/b.log'), join(dir.path, 'logs', 'a', 'b.log'));
    assert.equal(logFilePath(dir.path, '../escape.log'), null);
    assert.equal(logFilePath(dir.path, '/etc/passwd'), null);
  });

  it('a file where a folder is needed is reported once and its lines are lost; other files still work', async () => {
    const errors: string[] = [];
    const log = new ConnectionLog(dir.path, { onError: (path) => errors.push(path) });
    // "edge" is another listener's log file: "edge/tcp.log" cannot be made. Before the fix this
    // threw out of a socket's close handler and took the process down.
    mkdirSync(join(dir.path, 'logs'), { recursive: true });
    writeFileSync(join(dir.path, 'logs', 'edge'), '');
    log.write({ enabled: true, format: 'TEXT', destination: 'edge' }, line);
    assert.doesNotThrow(() => log.write({ enabled: true, format: 'JSON', destination: 'edge/tcp.log' }, line));
    assert.doesNotThrow(() => log.write({ enabled: true, format: 'JSON', destination: 'edge/tcp.log' }, line));
    assert.deepEqual(errors, [join(dir.path, 'logs', 'edge', 'tcp.log')]);
    await log.close();
    assert.match(readFileSync(join(dir.path, 'logs', 'edge'), 'utf8'), /listener-a TCP 127\.0\.0\.1:5000 -> b1 in=3 out=6 duration_ms=250 end=client_closed\n$/);
  });
});
