import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import {
  CORPORA,
  brownToText,
  buildCorpus,
  checkCorpusNames,
  debianLicenses,
  fortunesToDocs,
  htmlToText,
  manTextToProse,
  writeCorpus,
  type CorpusDoc,
} from '../src/data/corpora.js';
import { UnforgetError } from '../src/errors.js';
import { MAIN, cli } from './helpers/cli.js';

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'unforget-corpora-test-'));
}

test('htmlToText: entities, nested inline tags, script/style/head dropped, paragraphs and accents kept', () => {
  const html = `<!DOCTYPE html><html><head><title>No title</title><style>p { color: red }</style>
    <script>var s = "<p>not text</p>";</script></head>
    <body><div class="navheader"><a href="prev.html">Prev</a></div>
    <h1><a id="x"/>Capítulo&nbsp;1. ¿Qué es <em>Debian</em>?</h1>
    <p>Uno &amp; dos &lt;tres&gt; &quot;cuatro&quot; &#241; &#xF1; &ntilde; — ¡Hola!
       mundo   <span class="strong"><strong>fuerte</strong></span>.</p>
    <div class="itemizedlist"><ul><li><p>usa <code class="literal">ls -l</code> aquí</p></li><li>línea<br/>siguiente</li></ul></div>
    <pre class="screen">$ sudo apt-get update</pre>
    <table><tr><td>celda</td><td>vecina</td></tr></table>
    <script>alert(1)</script><p>fin</p></body></html>`;
  const text = htmlToText(html, { skipClasses: ['navheader'] });
  assert.equal(
    text,
    [
      'Capítulo 1. ¿Qué es Debian?',
      'Uno & dos <tres> "cuatro" ñ ñ ñ — ¡Hola! mundo fuerte.',
      'usa ls -l aquí',
      'línea\nsiguiente',
      'celda vecina',
      'fin',
    ].join('\n\n'),
  );
  // <pre> is dropped by default and kept on request.
  assert.ok(!text.includes('apt-get'));
  assert.ok(htmlToText(html, { dropPre: false }).includes('$ sudo apt-get update'));
  // Without skipClasses the navigation text is ordinary text.
  assert.ok(htmlToText(html).startsWith('Prev\n\n'));
});

test('htmlToText: skipped regions end at their own closing tag, nested or self-closing', () => {
  const html = '<div class="toc"><div><p>inner</p><div class="toc">deeper</div></div><p>still toc</p></div><p>after</p>' + '<div class="navfooter"/><p>kept after a self-closed skip</p>';
  assert.equal(htmlToText(html, { skipClasses: ['toc', 'navfooter'] }), 'after\n\nkept after a self-closed skip');
  // A class list matches by token, not by substring.
  assert.equal(htmlToText('<div class="table-contents">x</div><div class="other table">y</div>', { skipClasses: ['table'] }), 'x');
});

test('brownToText: tags stripped at the last slash, punctuation attached, paragraphs and headlines', () => {
  const tagged = [
    '',
    '',
    '\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn \'\'/\'\' ,/, wrote/vbd Durwood/np Pye/np Jr./np ./.',
    '',
    '',
    'It/pps cost/vbd 1-1/2/cd dollars/nns (/( cheap/jj )/) ./.',
    '',
    '',
    'Merger/nn-hl proposed/vbn-hl ',
    '',
    '\tHe/pps said/vbd \'/\' yes/rb \'/\' ;/. she/pps didn\'t/dod* ?/.',
    '',
  ].join('\n');
  assert.equal(
    brownToText(tagged),
    'The jury said "no evidence", wrote Durwood Pye Jr. It cost 1-1/2 dollars (cheap).\n\nMerger proposed\n\nHe said \'yes\'; she didn\'t?',
  );
});

test('fortunesToDocs: split at % lines, whitespace tidied, empty entries dropped', () => {
  const src = 'El saber no ocupa lugar.\n%\n\n  ¿Quién sabe?\t\t\n\t\t-- Anónimo  \n%\n%\nAño \x1bnuevo.\n%\n';
  assert.deepEqual(fortunesToDocs(src), ['El saber no ocupa lugar.', '¿Quién sabe?\n-- Anónimo', 'Año nuevo.']);
});

test('manTextToProse: header/footer dropped, headings alone, filled lines rejoined', () => {
  const rendered = [
    'LS(1)                     Órdenes de usuario                     LS(1)',
    '',
    'NOMBRE',
    '       ls - lista el contenido',
    '       de un  directorio',
    '',
    'DESCRIPCIÓN',
    '       -a, --all',
    '              no oculta las entradas',
    '',
    'GNU coreutils 9.1            Septiembre 2022                     LS(1)',
    '',
  ].join('\n');
  assert.equal(manTextToProse(rendered), 'NOMBRE\n\nls - lista el contenido de un directorio\n\nDESCRIPCIÓN\n\n-a, --all no oculta las entradas');
});

test('debianLicenses: License field names from a DEP-5 copyright file, unique and in order', () => {
  const copyright = [
    'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/',
    '',
    'Files: *',
    'Copyright: 2007 A',
    'License: GPL-2+',
    ' This program is free software.',
    '',
    'Files: b/*',
    'License: GPL-3+',
    '',
    'Files: c/*',
    'License: GPL-2+',
    '',
  ].join('\n');
  assert.deepEqual(debianLicenses(copyright), ['GPL-2+', 'GPL-3+']);
  assert.deepEqual(debianLicenses('Copyright (c) someone. All rights reserved.'), []);
});

const META = {
  language: 'es',
  description: 'test',
  source: 'deb test=1.0',
  url_or_origin: 'file:///nowhere',
  license: 'GPL-2+',
  license_from: '/usr/share/doc/test/copyright',
  cleaning: 'none',
};

test('writeCorpus: docs.jsonl and corpus.json, byte counts, skip without force, replace with force', () => {
  const out = tmpDir();
  const docs: CorpusDoc[] = [
    { id: 'a', text: 'Año: ¿sí? ¡ñ!' },
    { id: 'empty', text: '  \n ' },
    { id: 'b', text: 'line "quoted"\nnext' },
  ];
  const now = new Date('2025-01-02T03:04:05Z');
  const m = writeCorpus(out, 'c1', docs, META, { now });
  assert.equal(m.documents, 2);
  // 'Año: ¿sí? ¡ñ!' has 13 characters, 5 of them two bytes in UTF-8.
  assert.equal(m.bytes, 18 + 'line "quoted"\nnext'.length);
  assert.equal(m.fetched_at, '2025-01-02T03:04:05.000Z');
  const onDisk = JSON.parse(fs.readFileSync(path.join(out, 'c1', 'corpus.json'), 'utf8'));
  assert.deepEqual(onDisk, { name: 'c1', ...META, format: 'jsonl', file: 'docs.jsonl', documents: 2, bytes: m.bytes, fetched_at: m.fetched_at });
  const lines = fs.readFileSync(path.join(out, 'c1', 'docs.jsonl'), 'utf8').split('\n');
  assert.equal(lines.pop(), '');
  assert.deepEqual(lines.map((l) => JSON.parse(l)), [docs[0], docs[2]]);
  assert.deepEqual(fs.readdirSync(out), ['c1']);

  assert.throws(() => writeCorpus(out, 'c1', docs, META), (e: unknown) => e instanceof UnforgetError && /already exists.*--force/.test((e as Error).message));
  const m2 = writeCorpus(out, 'c1', [{ id: 'z', text: 'nuevo' }], META, { force: true });
  assert.equal(m2.documents, 1);
  assert.equal(fs.readFileSync(path.join(out, 'c1', 'docs.jsonl'), 'utf8'), '{"id":"z","text":"nuevo"}\n');
  assert.deepEqual(fs.readdirSync(out), ['c1']);
});

test('writeCorpus: a failure part-way leaves neither the corpus folder nor a temporary', () => {
  const out = tmpDir();
  function* failing(): Generator<CorpusDoc> {
    yield { id: 'a', text: 'uno' };
    throw new Error('disk on fire');
  }
  assert.throws(() => writeCorpus(out, 'c2', failing(), META), /disk on fire/);
  assert.deepEqual(fs.readdirSync(out), []);
  // And a forced replacement that fails keeps the old complete corpus.
  writeCorpus(out, 'c2', [{ id: 'old', text: 'viejo' }], META);
  assert.throws(() => writeCorpus(out, 'c2', failing(), META, { force: true }), /disk on fire/);
  assert.deepEqual(fs.readdirSync(out), ['c2']);
  assert.match(fs.readFileSync(path.join(out, 'c2', 'docs.jsonl'), 'utf8'), /viejo/);
});

test('buildCorpus: a Debian Reference package tree becomes one document per page, licence from its copyright file', () => {
  const root = tmpDir();
  const out = tmpDir();
  const pages = path.join(root, 'usr/share/debian-reference');
  fs.mkdirSync(pages, { recursive: true });
  const page = (title: string, body: string) =>
    `<html><head><title>${title}</title></head><body><div class="navheader"><a href="x">Next</a></div><div class="toc"><p>1.1. Contents</p></div>` +
    `<h1>${title}</h1>${body}<div class="table"><table><tr><td>pkg</td><td>123</td></tr></table></div><pre class="screen">$ ls</pre><div class="navfooter">Home</div></body></html>`;
  fs.writeFileSync(path.join(pages, 'ch01.es.html'), page('Capítulo 1', '<p>Año &amp; señal.</p>'));
  fs.writeFileSync(path.join(pages, 'index.es.html'), page('Referencia', '<p>¿Índice?</p>'));
  fs.writeFileSync(path.join(pages, 'ch01.en.html'), page('Chapter 1', '<p>English.</p>'));
  const doc = path.join(root, 'usr/share/doc/debian-reference-es');
  fs.mkdirSync(doc, { recursive: true });
  fs.writeFileSync(path.join(doc, 'copyright'), 'Format: x\n\nFiles: *\nCopyright: 2007 O. A.\nLicense: GPL-2+\n text\n');
  const m = buildCorpus(CORPORA['debian-reference-es']!, { root, source: 'deb debian-reference-es=9.9', url: 'http://example/deb', version: '9.9' }, out);
  assert.equal(m.language, 'es');
  assert.equal(m.license, 'GPL-2+');
  assert.equal(m.license_from, '/usr/share/doc/debian-reference-es/copyright');
  assert.equal(m.source, 'deb debian-reference-es=9.9');
  const docs = fs.readFileSync(path.join(out, 'debian-reference-es', 'docs.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(docs, [
    { id: 'index.es.html', text: 'Referencia\n\n¿Índice?' },
    { id: 'ch01.es.html', text: 'Capítulo 1\n\nAño & señal.' },
  ]);
  assert.equal(m.documents, 2);
});

test('checkCorpusNames: every unknown name is reported with the known ones', () => {
  assert.equal(checkCorpusNames(['brown']).length, 1);
  assert.throws(() => checkCorpusNames(['brown', 'nope', 'nada']), /unknown corpus 'nope', 'nada' \(known: .*debian-reference-en.*brown/);
});

test('CLI: corpus list, unknown name, missing tool, and an existing corpus skipped without any tool', () => {
  const cwd = tmpDir();
  const list = cli(cwd, ['corpus', 'list']);
  assert.equal(list.status, 0, list.stderr);
  for (const name of ['debian-reference-en', 'debian-reference-es', 'brown', 'fortunes-es', 'manpages-es']) assert.match(list.stdout, new RegExp(`^${name}\\s`, 'm'));

  const bad = cli(cwd, ['corpus', 'fetch', 'brown', 'nope']);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /^error: .*'nope'.*\n$/);
  assert.equal(bad.stderr.split('\n').length, 2);
  assert.ok(!fs.existsSync(path.join(cwd, 'data')), 'nothing is fetched when a name is unknown');

  // No package tools on PATH: the error names the tool, and nothing is left behind.
  const emptyBin = tmpDir();
  const env = { ...process.env, PATH: emptyBin };
  const noTool = spawnSync(process.execPath, [MAIN, 'corpus', 'fetch', 'debian-reference-en', '--out', 'out'], { cwd, env, encoding: 'utf8' });
  assert.equal(noTool.status, 1, noTool.stderr);
  assert.match(noTool.stderr, /^error: .*'apt-get' not found on PATH\n$/m);
  assert.ok(!fs.existsSync(path.join(cwd, 'out', 'debian-reference-en')));

  // A complete corpus (manifest present) is skipped: no tool is needed.
  writeCorpus(path.join(cwd, 'out'), 'brown', [{ id: 'x', text: 'hi' }], { ...META, language: 'en' });
  const skip = spawnSync(process.execPath, [MAIN, 'corpus', 'fetch', 'brown', '--out', 'out'], { cwd, env, encoding: 'utf8' });
  assert.equal(skip.status, 0, skip.stderr);
  assert.equal(JSON.parse(skip.stdout).status, 'skipped');
  const forced = spawnSync(process.execPath, [MAIN, 'corpus', 'fetch', 'brown', '--out', 'out', '--force'], { cwd, env, encoding: 'utf8' });
  assert.equal(forced.status, 1);
  assert.match(forced.stderr, /'npm' not found on PATH/);
  assert.match(fs.readFileSync(path.join(cwd, 'out', 'brown', 'docs.jsonl'), 'utf8'), /"hi"/, 'a failed forced fetch keeps the old corpus');
});
