/**
 * The GeoIP database (src/policy/geoip.ts) on MaxMind DB files written by test/helpers/mmdb.ts, the
 * `geoip.database_path` setting, and start-up refusing a file it cannot use.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { ConfigError, loadConfig } from '../../src/config/load.ts';
import { SETTINGS } from '../../src/config/settings.ts';
import { openGeoIp } from '../../src/policy/geoip.ts';
import { startTestFulcrum, tempDir, TEST_TOKEN } from '../helpers/fulcrum.ts';
import { buildMmdb, countryRecord, writeCountryMmdb } from '../helpers/mmdb.ts';
import { runFulcrum, spawnFulcrum } from '../helpers/process.ts';

const NETWORKS = {
  '192.0.2.0/24': 'FR',
  '192.0.2.128/25': 'DE',
  '198.51.100.7': 'JP',
  '10.0.0.0/8': 'US',
  '2001:db8::/32': 'NL',
  '2001:db8:1::/48': 'BE',
};

/** [address, country] on a database holding NETWORKS. */
const LOOKUPS: [string, string | null][] = [
  ['192.0.2.1', 'FR'],
  ['192.0.2.127', 'FR'],
  ['192.0.2.128', 'DE'],
  ['192.0.2.255', 'DE'],
  ['198.51.100.7', 'JP'],
  ['198.51.100.8', null],
  ['10.200.0.1', 'US'],
  ['::ffff:192.0.2.1', 'FR'],
  ['::ffff:10.0.0.1', 'US'],
  ['2001:db8::1', 'NL'],
  ['2001:db8:1::1', 'BE'],
  ['2001:db8:2::1', 'NL'],
  ['2001:db9::1', null],
  ['8.8.8.8', null],
  ['::1', null],
  ['not-an-address', null],
];

describe('openGeoIp', () => {
  let dir: { path: string; remove: () => void };
  before(() => (dir = tempDir('fulcrum-geoip-')));
  after(() => dir.remove());
  const file = (name: string) => join(dir.path, name);

  for (const recordSize of [24, 28, 32] as const) {
    it(`looks up IPv4, IPv4-mapped and IPv6 addresses (${recordSize}-bit records)`, () => {
      const geo = openGeoIp(writeCountryMmdb(file(`country-${recordSize}.mmdb`), NETWORKS, { recordSize }));
      for (const [ip, country] of LOOKUPS) assert.equal(geo.country(ip), country, ip);
      // Asked again: the same answers (from the cache).
      for (const [ip, country] of LOOKUPS) assert.equal(geo.country(ip), country, `${ip} again`);
    });
  }

  it('describes what it opened', () => {
    const path = writeCountryMmdb(file('info.mmdb'), NETWORKS, { databaseType: 'GeoLite2-Country', buildEpoch: 1_717_200_000 });
    assert.deepEqual(openGeoIp(path).info, { path, databaseType: 'GeoLite2-Country', ipVersion: 6, builtAt: '2024-06-01T00:00:00.000Z' });
  });

  it('an IPv4-only database answers IPv4 and IPv4-mapped addresses, and no country for IPv6', () => {
    const v4 = Object.fromEntries(Object.entries(NETWORKS).filter(([n]) => !n.includes(':')));
    const geo = openGeoIp(writeCountryMmdb(file('v4.mmdb'), v4, { ipVersion: 4 }));
    assert.equal(geo.info.ipVersion, 4);
    assert.equal(geo.country('192.0.2.200'), 'DE');
    assert.equal(geo.country('::ffff:198.51.100.7'), 'JP');
    // Walked down the IPv4 tree, 2001:db8:: would land on whatever its first 32 bits spell.
    assert.equal(geo.country('2001:db8::1'), null);
    assert.equal(geo.country('c000:200::'), null, 'the bits of 192.0.2.0 as IPv6');
  });

  it('reads the registered country when the record has no located one, a flat country_code, and upper-cases codes', () => {
    const path = file('records.mmdb');
    writeFileSync(
      path,
      buildMmdb([
        { network: '203.0.113.0/25', data: countryRecord('SG', { registeredOnly: true }) },
        { network: '203.0.113.128/25', data: { country_code: 'it' } },
        { network: '198.51.100.0/24', data: countryRecord('se') },
        { network: '192.0.2.0/24', data: { country: { iso_code: 'EUR' } } },
        { network: '192.0.3.0/24', data: { city: { names: { en: 'Nowhere' } } } },
      ]),
    );
    const geo = openGeoIp(path);
    assert.equal(geo.country('203.0.113.1'), 'SG');
    assert.equal(geo.country('203.0.113.200'), 'IT');
    assert.equal(geo.country('198.51.100.1'), 'SE');
    assert.equal(geo.country('192.0.2.1'), null, 'not an ISO 3166-1 alpha-2 code');
    assert.equal(geo.country('192.0.3.1'), null, 'a record without a country');
  });

  it('refuses a file that does not exist, naming the setting, the path and the reason', () => {
    const path = file('missing.mmdb');
    assert.throws(() => openGeoIp(path), { message: `geoip.database_path ${path}: cannot read it (ENOENT)` });
    assert.throws(() => openGeoIp(dir.path), { message: `geoip.database_path ${dir.path}: cannot read it (EISDIR)` });
  });

  it('refuses a gzip-compressed database (as MaxMind downloads come), saying to uncompress it', () => {
    const path = file('GeoLite2-Country.tar.gz');
    writeFileSync(path, gzipSync(tarOf('GeoLite2-Country_20240601/GeoLite2-Country.mmdb', buildMmdb([{ network: '192.0.2.0/24', data: countryRecord('FR') }]))));
    assert.throws(() => openGeoIp(path), {
      message: `geoip.database_path ${path}: the file is gzip-compressed; give the uncompressed .mmdb file (a .tar.gz download: extract it with tar -xzf)`,
    });
  });

  it('refuses a tar archive holding the database (which the reader alone would open and find no country in)', () => {
    const path = file('GeoLite2-Country.tar');
    writeFileSync(path, tarOf('GeoLite2-Country_20240601/GeoLite2-Country.mmdb', buildMmdb([{ network: '192.0.2.0/24', data: countryRecord('FR') }])));
    assert.throws(() => openGeoIp(path), {
      message: `geoip.database_path ${path}: the file is a tar archive; give the .mmdb file inside it (tar -xf, then the .mmdb path)`,
    });
  });

  it('refuses a file that is not a MaxMind DB: text, empty, or a database behind other bytes', () => {
    const text = file('text.mmdb');
    writeFileSync(text, 'this is not a database\n'.repeat(50));
    const empty = file('empty.mmdb');
    writeFileSync(empty, '');
    for (const path of [text, empty]) {
      assert.throws(() => openGeoIp(path), { message: `geoip.database_path ${path}: not a MaxMind DB file (it has no MaxMind DB metadata section)` }, path);
    }
    const wrapped = file('wrapped.mmdb');
    writeFileSync(wrapped, Buffer.concat([Buffer.from('#!junk in front\n'), buildMmdb([{ network: '192.0.2.0/24', data: countryRecord('FR') }])]));
    assert.throws(() => openGeoIp(wrapped), (err: Error) => err.message.startsWith(`geoip.database_path ${wrapped}: not a usable MaxMind DB (its search tree`));
    const badMetadata = file('bad-metadata.mmdb');
    writeFileSync(badMetadata, Buffer.concat([Buffer.alloc(64, 0xff), Buffer.from('abcdef4d61784d696e642e636f6d', 'hex'), Buffer.from([0xff, 0xff, 0xff])]));
    assert.throws(() => openGeoIp(badMetadata), (err: Error) => err.message.startsWith(`geoip.database_path ${badMetadata}: not a`));
  });

  it('refuses a MaxMind DB whose metadata is not usable', () => {
    const good = buildMmdb([{ network: '192.0.2.0/24', data: countryRecord('FR') }]);
    // The same file with ip_version 5 in its metadata.
    const marker = good.lastIndexOf(Buffer.from('ip_version'));
    const bad = Buffer.from(good);
    // ip_version is a uint16 holding 6: control byte 0xa1, then the value.
    assert.equal(bad[marker + 10], 0xa1);
    bad[marker + 11] = 5;
    const path = file('ipv5.mmdb');
    writeFileSync(path, bad);
    assert.throws(() => openGeoIp(path), { message: `geoip.database_path ${path}: not a usable MaxMind DB (ip_version 5, node_count ${readNodeCount(good)})` });
  });
});

/** A tar archive (ustar) holding one file, as `tar -cf` writes it. */
function tarOf(name: string, content: Buffer): Buffer {
  const header = Buffer.alloc(512);
  header.write(name, 0, 100, 'utf8');
  header.write('0000644\0', 100, 'latin1');
  header.write(`${content.length.toString(8).padStart(11, '0')}\0`, 124, 'latin1');
  header.write('0', 156, 'latin1');
  header.write('ustar\0' + '00', 257, 'latin1');
  header.write('        ', 148, 'latin1');
  let sum = 0;
  for (const b of header) sum += b;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  const padding = Buffer.alloc((512 - (content.length % 512)) % 512);
  return Buffer.concat([header, content, padding, Buffer.alloc(1024)]);
}

/** The node_count written in a database's metadata (a uint32 after its key). */
function readNodeCount(db: Buffer): number {
  const at = db.lastIndexOf(Buffer.from('node_count')) + 'node_count'.length;
  const size = db[at]! & 0x1f;
  return size === 0 ? 0 : db.readUIntBE(at + 1, size);
}

describe('the geoip.database_path setting', () => {
  it('is unset by default', () => {
    const { config, origin } = loadConfig({ argv: [], env: {} });
    assert.equal(config.geoipDatabasePath, undefined);
    assert.equal(origin.geoipDatabasePath, 'default');
    const setting = SETTINGS.find((s) => s.key === 'geoipDatabasePath');
    assert.deepEqual([setting?.toml, setting?.env, setting?.flag], ['geoip.database_path', 'FULCRUM_GEOIP_DATABASE', 'geoip-database']);
  });

  it('is read from the file, the environment and the flag, flags first', () => {
    const readFile = (path: string) => {
      if (path !== '/etc/fulcrum.toml') throw Object.assign(new Error('no such file'), { code: 'ENOENT' });
      return '[geoip]\ndatabase_path = "/var/lib/geoip/file.mmdb"\n';
    };
    const fromFile = loadConfig({ argv: ['--config', '/etc/fulcrum.toml'], env: {}, readFile });
    assert.equal(fromFile.config.geoipDatabasePath, '/var/lib/geoip/file.mmdb');
    assert.equal(fromFile.origin.geoipDatabasePath, 'file');
    const fromEnv = loadConfig({ argv: ['--config', '/etc/fulcrum.toml'], env: { FULCRUM_GEOIP_DATABASE: '/env.mmdb' }, readFile });
    assert.equal(fromEnv.config.geoipDatabasePath, '/env.mmdb');
    assert.equal(fromEnv.origin.geoipDatabasePath, 'env');
    const fromFlag = loadConfig({ argv: ['--geoip-database', '/flag.mmdb'], env: { FULCRUM_GEOIP_DATABASE: '/env.mmdb' } });
    assert.equal(fromFlag.config.geoipDatabasePath, '/flag.mmdb');
    assert.equal(fromFlag.origin.geoipDatabasePath, 'flag');
  });

  it('an empty environment variable is unset; an empty flag or file value is refused, naming where it came from', () => {
    assert.equal(loadConfig({ argv: [], env: { FULCRUM_GEOIP_DATABASE: '' } }).config.geoipDatabasePath, undefined);
    assert.throws(
      () => loadConfig({ argv: ['--geoip-database', ' '], env: {} }),
      (err: unknown) => err instanceof ConfigError && /^--geoip-database: must not be empty/.test(err.message),
    );
    assert.throws(
      () => loadConfig({ argv: ['-c', '/f'], env: {}, readFile: () => '[geoip]\ndatabase_path = ""\n' }),
      (err: unknown) => err instanceof ConfigError && /^geoip\.database_path in \/f: must not be empty/.test(err.message),
    );
  });
});

describe('start-up with a GeoIP database', () => {
  let dir: { path: string; remove: () => void };
  before(() => (dir = tempDir('fulcrum-geoip-start-')));
  after(() => dir.remove());

  it('refuses to start on a bad file with the reason, before opening the store', async () => {
    const gz = join(dir.path, 'country.mmdb.gz');
    writeFileSync(gz, gzipSync(buildMmdb([{ network: '192.0.2.0/24', data: countryRecord('FR') }])));
    const missing = join(dir.path, 'nope.mmdb');
    for (const [path, reason] of [
      [gz, /the file is gzip-compressed/],
      [missing, /cannot read it \(ENOENT\)/],
    ] as const) {
      const dataDir = join(dir.path, `data-${readdirSync(dir.path).length}`);
      mkdirSync(dataDir);
      await assert.rejects(startTestFulcrum({ dataDir, geoipDatabasePath: path }), (err: Error) => {
        assert.ok(err.message.startsWith(`geoip.database_path ${path}: `), err.message);
        assert.match(err.message, reason);
        return true;
      });
      assert.deepEqual(readdirSync(dataDir), [], 'nothing written to the data dir');
    }
  });

  it('starts with a good file', async () => {
    const t = await startTestFulcrum({ geoipDatabasePath: writeCountryMmdb(join(dir.path, 'good.mmdb'), NETWORKS) });
    try {
      assert.equal(t.fulcrum.policies.geo?.country('192.0.2.1'), 'FR');
    } finally {
      await t.close();
    }
  });

  it('`fulcrum serve` exits 1 with "cannot start" and the reason on stderr', async () => {
    const bad = join(dir.path, 'bad.mmdb');
    writeFileSync(bad, 'not a database at all\n'.repeat(10));
    const dataDir = join(dir.path, 'serve-bad');
    const exit = await runFulcrum(['serve', '--geoip-database', bad], {
      FULCRUM_DATA_DIR: dataDir,
      FULCRUM_API_ADDR: '127.0.0.1:0',
      FULCRUM_ADMIN_TOKEN: TEST_TOKEN,
    });
    assert.equal(exit.code, 1, exit.stderr);
    assert.match(exit.stderr, new RegExp(`^fulcrum: cannot start: geoip\\.database_path ${bad.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: not a MaxMind DB file`, 'm'));
  });

  it('`fulcrum serve` logs the database it loaded', async () => {
    const path = writeCountryMmdb(join(dir.path, 'serve-good.mmdb'), NETWORKS, { databaseType: 'GeoLite2-Country' });
    const p = await spawnFulcrum({ FULCRUM_DATA_DIR: join(dir.path, 'serve-good'), FULCRUM_ADMIN_TOKEN: TEST_TOKEN, FULCRUM_GEOIP_DATABASE: path });
    try {
      const line = p.stdout().split('\n').find((l) => l.includes('GeoIP database loaded'));
      assert.ok(line, p.stdout());
      const entry = JSON.parse(line) as { geoip: Record<string, unknown> };
      assert.deepEqual(entry.geoip, { path, databaseType: 'GeoLite2-Country', ipVersion: 6, builtAt: '2023-11-14T22:13:20.000Z' });
    } finally {
      await p.kill();
    }
  });
});
