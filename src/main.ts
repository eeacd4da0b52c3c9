#!/usr/bin/env node
/** The `fulcrum` command. Composition happens in app.ts; this only dispatches. */
import { serve } from './cli/serve.ts';
import { SETTINGS } from './config/settings.ts';
import { VERSION } from './app.ts';

const USAGE = `Usage: fulcrum <command> [options]

Commands:
  serve        start the management API and the data plane
  version      print the version

Options of serve (flags override FULCRUM_* environment variables, which override the file):
  -c, --config <path>      TOML configuration file (or FULCRUM_CONFIG)
${SETTINGS.filter((s) => s.flag)
  .map((s) => `  --${s.flag!.padEnd(22)} ${s.doc} [${s.env}]`)
  .join('\n')}
`;

const [command, ...rest] = process.argv.slice(2);
switch (command) {
  case 'serve':
    await serve(rest, process.env);
    break;
  case 'version':
  case '--version':
  case '-V':
    process.stdout.write(`fulcrum ${VERSION}\n`);
    break;
  case undefined:
  case 'help':
  case '--help':
  case '-h':
    process.stdout.write(USAGE);
    break;
  default:
    process.stderr.write(`fulcrum: unknown command '${command}'\n\n${USAGE}`);
    process.exit(2);
}
