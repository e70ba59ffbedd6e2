/**
 * docs/cli.md is generated from the commander definitions (`npm run docs`), so help and docs cannot drift;
 * cli-doc.test.ts fails when the committed file is stale.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buildProgram } from '../../src/cli/program.js';
import { projectRoot } from '../helpers/shared.js';

export const CLI_DOC = join(projectRoot, 'docs', 'cli.md');

export function renderCliDoc(): string {
  const program = buildProgram();
  program.configureHelp({ helpWidth: 110 });
  const parts = [
    '# Command-line reference',
    '',
    'Generated from the command definitions by `npm run docs`; do not edit by hand.',
    '',
    '## tfhf',
    '',
    '```',
    program.helpInformation().trimEnd(),
    '```',
  ];
  for (const cmd of program.commands) {
    cmd.configureHelp({ helpWidth: 110 });
    parts.push('', `## tfhf ${cmd.name()}`, '', '```', cmd.helpInformation().trimEnd(), '```');
  }
  return `${parts.join('\n')}\n`;
}

if (process.argv.includes('--write')) {
  await writeFile(CLI_DOC, renderCliDoc());
  process.stderr.write(`wrote ${CLI_DOC}\n`);
} else if (process.argv[1]?.endsWith('cli-doc.js')) {
  process.stdout.write(renderCliDoc());
}

export async function committedCliDoc(): Promise<string> {
  return readFile(CLI_DOC, 'utf8');
}
