import assert from 'node:assert/strict';
import { test } from 'node:test';
import { committedCliDoc, renderCliDoc } from './cli-doc.js';

test('docs/cli.md matches the command definitions (regenerate with npm run docs)', async () => {
  assert.equal(await committedCliDoc(), renderCliDoc());
});
