import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config/load.ts';
import { SETTINGS } from '../../src/config/settings.ts';

const files = (content: Record<string, string>) => (path: string) => {
  const text = content[path];
  if (text === undefined) throw Object.assign(new Error('no such file'), { code: 'ENOENT' });
  return text;
};

describe('server configuration', () => {
  it('uses the defaults table when nothing is given', () => {
    const { config, origin } = loadConfig({ argv: [], env: {} });
    assert.deepEqual(config.apiAddr, { host: '127.0.0.1', port: 6300 });
    assert.equal(config.dataDir, './data');
    assert.equal(config.logLevel, 'info');
    assert.equal(config.adminToken, undefined);
    for (const s of SETTINGS) assert.equal(origin[s.key], 'default');
  });

  it('takes flags over environment over file over defaults', () => {
    const readFile = files({ '/etc/f.toml': '[server]\napi_addr = "127.0.0.1:7000"\ndata_dir = "/file"\n[logging]\nlevel = "warn"\n' });
    const fileOnly = loadConfig({ argv: ['--config', '/etc/f.toml'], env: {}, readFile });
    assert.deepEqual(fileOnly.config.apiAddr, { host: '127.0.0.1', port: 7000 });
    assert.equal(fileOnly.config.logLevel, 'warn');

    const envOverFile = loadConfig({ argv: [], env: { FULCRUM_CONFIG: '/etc/f.toml', FULCRUM_API_ADDR: '127.0.0.2:7001' }, readFile });
    assert.deepEqual(envOverFile.config.apiAddr, { host: '127.0.0.2', port: 7001 });
    assert.equal(envOverFile.config.dataDir, '/file');
    assert.equal(envOverFile.origin.apiAddr, 'env');

    const flagOverEnv = loadConfig({
      argv: ['-c', '/etc/f.toml', '--api-addr', '[::1]:7002', '--data-dir', '/flag'],
      env: { FULCRUM_API_ADDR: '127.0.0.2:7001', FULCRUM_DATA_DIR: '/env' },
      readFile,
    });
    assert.deepEqual(flagOverEnv.config.apiAddr, { host: '::1', port: 7002 });
    assert.equal(flagOverEnv.config.dataDir, '/flag');
    assert.equal(flagOverEnv.origin.dataDir, 'flag');
  });

  const bad: [string, Parameters<typeof loadConfig>[0], RegExp][] = [
    ['a port out of range', { argv: [], env: { FULCRUM_API_ADDR: '127.0.0.1:70000' } }, /^FULCRUM_API_ADDR: port 70000 is out of range/],
    ['an address without port', { argv: [], env: { FULCRUM_API_ADDR: 'localhost' } }, /^FULCRUM_API_ADDR: 'localhost' is not host:port/],
    ['an unknown log level', { argv: ['--log-level', 'loud'], env: {} }, /^--log-level: 'loud' is not one of fatal, error/],
    ['a short admin token', { argv: [], env: { FULCRUM_ADMIN_TOKEN: 'short' } }, /^FULCRUM_ADMIN_TOKEN: must be at least 16 characters/],
    ['a non-numeric timeout', { argv: [], env: { FULCRUM_SHUTDOWN_TIMEOUT_MS: '10s' } }, /^FULCRUM_SHUTDOWN_TIMEOUT_MS: '10s' is not a whole number/],
    ['an unknown flag', { argv: ['--colour', 'red'], env: {} }, /^command line: .*colour/],
    ['a missing config file', { argv: ['--config', '/nope.toml'], env: {}, readFile: files({}) }, /^config file \/nope.toml: cannot read it \(ENOENT\)/],
    ['an invalid TOML file', { argv: ['-c', '/f'], env: {}, readFile: files({ '/f': 'server = [' }) }, /^config file \/f: not valid TOML/],
    ['an unknown key in the file', { argv: ['-c', '/f'], env: {}, readFile: files({ '/f': '[server]\napi_adr = "x"\n' }) }, /unknown setting 'server.api_adr'/],
    ['a wrongly typed file value', { argv: ['-c', '/f'], env: {}, readFile: files({ '/f': '[server]\ndata_dir = ""\n' }) }, /^server.data_dir in \/f: must not be empty/],
  ];
  for (const [what, sources, message] of bad) {
    it(`stops with a message naming the setting for ${what}`, () => {
      assert.throws(() => loadConfig(sources), (err: unknown) => err instanceof ConfigError && message.test(err.message));
    });
  }

  it('has no flag for the admin token, so it never shows in a process listing', () => {
    assert.equal(SETTINGS.find((s) => s.key === 'adminToken')?.flag, undefined);
    assert.throws(() => loadConfig({ argv: ['--admin-token', 'x'.repeat(20)], env: {} }), ConfigError);
  });
});
