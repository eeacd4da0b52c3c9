import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { parse as parseToml } from 'smol-toml';
import { SETTINGS, type ServerConfig } from './settings.ts';

/** A setting that could not be used; start-up stops with this message. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export interface ConfigSources {
  argv: readonly string[];
  env: Readonly<Record<string, string | undefined>>;
  readFile?: (path: string) => string;
}

export interface LoadedConfig {
  config: ServerConfig;
  /** Where each value came from, for the start-up log. */
  origin: Record<keyof ServerConfig, 'default' | 'file' | 'env' | 'flag'>;
  configFile: string | undefined;
}

function flatten(table: Record<string, unknown>, prefix = ''): Map<string, unknown> {
  const out = new Map<string, unknown>();
  for (const [k, v] of Object.entries(table)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Date)) {
      for (const [kk, vv] of flatten(v as Record<string, unknown>, key)) out.set(kk, vv);
    } else {
      out.set(key, v);
    }
  }
  return out;
}

export function loadConfig(sources: ConfigSources): LoadedConfig {
  const options: Record<string, { type: 'string'; short?: string }> = { config: { type: 'string', short: 'c' } };
  for (const s of SETTINGS) if (s.flag) options[s.flag] = { type: 'string' };
  let flags: Record<string, string | boolean | undefined>;
  try {
    flags = parseArgs({ args: [...sources.argv], options, strict: true, allowPositionals: false }).values as Record<
      string,
      string | undefined
    >;
  } catch (err) {
    throw new ConfigError(`command line: ${(err as Error).message}`);
  }

  const configFile = (flags.config as string | undefined) ?? sources.env.FULCRUM_CONFIG;
  let fileValues = new Map<string, unknown>();
  if (configFile !== undefined) {
    let text: string;
    try {
      text = (sources.readFile ?? ((p) => readFileSync(p, 'utf8')))(configFile);
    } catch (err) {
      throw new ConfigError(`config file ${configFile}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
    try {
      fileValues = flatten(parseToml(text));
    } catch (err) {
      throw new ConfigError(`config file ${configFile}: not valid TOML: ${(err as Error).message.split('\n')[0]}`);
    }
    const known = new Set<string>(SETTINGS.map((s) => s.toml));
    for (const key of fileValues.keys()) {
      if (!known.has(key)) {
        throw new ConfigError(`config file ${configFile}: unknown setting '${key}' (known: ${[...known].join(', ')})`);
      }
    }
  }

  const config = {} as Record<string, unknown>;
  const origin = {} as LoadedConfig['origin'];
  for (const s of SETTINGS) {
    const fromFlag = s.flag ? flags[s.flag] : undefined;
    const fromEnv = sources.env[s.env];
    const fromFile = fileValues.get(s.toml);
    let raw: unknown;
    let where: string;
    if (fromFlag !== undefined) {
      raw = fromFlag;
      where = `--${s.flag}`;
      origin[s.key] = 'flag';
    } else if (fromEnv !== undefined && fromEnv !== '') {
      raw = fromEnv;
      where = s.env;
      origin[s.key] = 'env';
    } else if (fromFile !== undefined) {
      raw = fromFile;
      where = `${s.toml} in ${configFile}`;
      origin[s.key] = 'file';
    } else {
      config[s.key] = s.default;
      origin[s.key] = 'default';
      continue;
    }
    try {
      config[s.key] = s.parse(raw);
    } catch (err) {
      throw new ConfigError(`${where}: ${(err as Error).message}`);
    }
  }
  return { config: config as unknown as ServerConfig, origin, configFile };
}
