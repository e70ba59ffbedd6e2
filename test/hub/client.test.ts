import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { FormatError } from '../../src/errors.js';
import { encodeRevision, findToken, HubClient, hubEndpoint, isOfflineEnv, NetworkError, normalizeEtag } from '../../src/hub/client.js';
import { checkRepoPath, filterFiles, globToRegExp } from '../../src/hub/download.js';
import { tempDir } from '../helpers/tmp.js';
import { fakeCommit, startHubEmulator } from './emulator.js';

test('endpoint from HF_ENDPOINT (trailing / stripped), offline values as huggingface_hub reads them', () => {
  assert.equal(hubEndpoint({}), 'https://huggingface.co');
  assert.equal(hubEndpoint({ HF_ENDPOINT: 'http://127.0.0.1:9/' }), 'http://127.0.0.1:9');
  for (const v of ['1', 'on', 'YES', 'true']) assert.equal(isOfflineEnv({ HF_HUB_OFFLINE: v }), true, v);
  assert.equal(isOfflineEnv({ HF_HUB_OFFLINE: '0' }), false);
  assert.equal(isOfflineEnv({ TRANSFORMERS_OFFLINE: '1' }), true);
});

test('token: --token, then HF_TOKEN, then $HF_HOME/token (cleaned)', async () => {
  const home = await tempDir();
  await mkdir(home, { recursive: true });
  await writeFile(join(home, 'token'), '  hf_file\r\n');
  assert.equal(findToken('hf_flag', { HF_TOKEN: 'hf_env', HF_HOME: home }), 'hf_flag');
  assert.equal(findToken(undefined, { HF_TOKEN: 'hf_env', HF_HOME: home }), 'hf_env');
  assert.equal(findToken(undefined, { HF_HOME: home }), 'hf_file');
  assert.equal(findToken(undefined, { HF_HOME: join(home, 'none') }), undefined);
  assert.equal(findToken(undefined, { HF_TOKEN: '  ', HF_HOME: join(home, 'none') }), undefined);
});

test('Authorization only for the endpoint origin', () => {
  const c = new HubClient({ endpoint: 'http://127.0.0.1:1234', token: 'hf_x', env: {} });
  assert.equal(c.headersFor('http://127.0.0.1:1234/a/b/resolve/main/x').authorization, 'Bearer hf_x');
  assert.equal(c.headersFor('http://127.0.0.1:1235/repos/abc').authorization, undefined);
  assert.equal(c.headersFor('https://cdn-lfs.huggingface.co/x').authorization, undefined);
});

test('etag normalisation and revision encoding', () => {
  assert.equal(normalizeEtag('W/"abc"'), 'abc');
  assert.equal(normalizeEtag('"abc"'), 'abc');
  assert.equal(encodeRevision('refs/pr/1'), 'refs%2Fpr%2F1');
});

test('repo paths that escape are refused; globs are fnmatch-like', () => {
  for (const bad of ['../x', '/x', 'a\\b', 'a/../../x', 'a//b', '', 'C:x', './x']) assert.throws(() => checkRepoPath(bad), FormatError, bad);
  assert.equal(checkRepoPath('onnx/model.onnx'), 'onnx/model.onnx');
  assert.ok(globToRegExp('data/*.json').test('data/a/b.json'));
  assert.ok(globToRegExp('onnx/').test('onnx/x'));
  assert.ok(!globToRegExp('*.JSON').test('a.json'));
  assert.ok(globToRegExp('model-0000?-of-*.safetensors').test('model-00001-of-00002.safetensors'));
  assert.deepEqual(filterFiles(['a.json', 'b.bin', 'c.json'], ['*.json'], ['c*']), ['a.json']);
});

test('HTTP(S)_PROXY is used, NO_PROXY bypasses it', async () => {
  const id = 'org/small';
  const hub = await startHubEmulator([{ id, commit: fakeCommit(id), files: new Map([['config.json', Buffer.from('{}')]]) }]);
  try {
    // A proxy that refuses connections: used → network error; bypassed for 127.0.0.1 → the Hub answers.
    const dead = 'http://127.0.0.1:9';
    const viaProxy = new HubClient({ endpoint: hub.endpoint, maxRetries: 0, env: { HTTP_PROXY: dead, HTTPS_PROXY: dead } });
    await assert.rejects(viaProxy.repoInfo(id, 'main'), NetworkError);
    assert.equal(hub.requests.length, 0);
    const bypass = new HubClient({ endpoint: hub.endpoint, maxRetries: 0, env: { HTTP_PROXY: dead, NO_PROXY: '127.0.0.1' } });
    assert.equal((await bypass.repoInfo(id, 'main')).sha, fakeCommit(id));
    const meta = await bypass.fileMetadata(id, 'main', 'config.json');
    assert.equal(meta.size, 2);
    assert.equal(meta.commit, fakeCommit(id));
  } finally {
    await hub.close();
  }
});

test('progress bars: none off a terminal or with --quiet; a total and per-file bars on a terminal', async () => {
  const { PassThrough } = await import('node:stream');
  const { downloadBars } = await import('../../src/hub/progress.js');
  const { createLog } = await import('../../src/log.js');
  const make = (tty: boolean): { stream: NodeJS.WriteStream; text: () => string } => {
    const s = new PassThrough();
    let out = '';
    s.on('data', (d: Buffer) => (out += d.toString()));
    Object.assign(s, { isTTY: tty, columns: 100 });
    return { stream: s as unknown as NodeJS.WriteStream, text: () => out };
  };
  const loud = createLog({ verbose: false, quiet: false, color: false });
  const quiet = createLog({ verbose: false, quiet: true, color: false });
  const saved = process.env.HF_HUB_DISABLE_PROGRESS_BARS;
  delete process.env.HF_HUB_DISABLE_PROGRESS_BARS;
  try {
    for (const [log, tty] of [[loud, false], [quiet, true]] as const) {
      const t = make(tty);
      const bars = downloadBars(log, t.stream);
      bars.fileStart('a.bin', 10);
      bars.fileAdvance('a.bin', 10);
      bars.fileDone('a.bin');
      bars.stop();
      assert.equal(t.text(), '');
    }
    const t = make(true);
    const bars = downloadBars(loud, t.stream);
    bars.fileStart('model.safetensors', 2048);
    bars.fileAdvance('model.safetensors', 1024);
    await new Promise((r) => setTimeout(r, 150));
    bars.fileDone('model.safetensors');
    bars.stop();
    assert.match(t.text(), /total/);
    assert.match(t.text(), /model\.safetensors/);
  } finally {
    if (saved !== undefined) process.env.HF_HUB_DISABLE_PROGRESS_BARS = saved;
  }
});
