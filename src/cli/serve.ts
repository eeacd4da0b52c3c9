import { ConfigError, loadConfig } from '../config/load.ts';
import { startFulcrum } from '../app.ts';

/** `fulcrum serve`: start, print a generated admin token once, stop cleanly on SIGTERM/SIGINT. */
export async function serve(argv: readonly string[], env: NodeJS.ProcessEnv): Promise<void> {
  let loaded;
  try {
    loaded = loadConfig({ argv, env });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`fulcrum: configuration error: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  let fulcrum;
  try {
    fulcrum = await startFulcrum(loaded.config);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const setting = { flag: '--api-addr', env: 'FULCRUM_API_ADDR', file: `server.api_addr in ${loaded.configFile}`, default: 'the default API address' }[
      loaded.origin.apiAddr
    ];
    const addr = `${loaded.config.apiAddr.host}:${loaded.config.apiAddr.port}`;
    const reason =
      e.code === 'EADDRINUSE'
        ? `${setting} ${addr} is already in use`
        : e.code === 'EACCES'
          ? `${setting} ${addr}: permission denied`
          : e.code === 'EADDRNOTAVAIL'
            ? `${setting} ${addr} is not an address of this host`
            : e.message;
    process.stderr.write(`fulcrum: cannot start: ${reason}\n`);
    process.exit(1);
  }
  if (fulcrum.generatedAdminToken !== undefined) {
    // Shown once, on stderr and outside the JSON log stream, so it never lands in shipped logs.
    process.stderr.write(
      `\nFulcrum generated an admin API token. It is shown only this once and stored only as a hash:\n\n  ${fulcrum.generatedAdminToken}\n\nUse it as: Authorization: Bearer <token>\n\n`,
    );
  }
  const onSignal = (signal: string) => {
    process.stderr.write(`fulcrum: ${signal} received, shutting down\n`);
    fulcrum.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`fulcrum: shutdown failed: ${(err as Error).message}\n`);
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => onSignal('SIGTERM'));
  process.once('SIGINT', () => onSignal('SIGINT'));
}
