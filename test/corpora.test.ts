import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import zlib from 'node:zlib';
import {
  CORPORA,
  ENGLISH_CORPORA,
  brownToText,
  buildCorpus,
  checkCorpusNames,
  debianLicenses,
  dependsNames,
  dictdEntries,
  dictdNumber,
  dropRoffVerbatim,
  fortunesToDocs,
  gcideEntryToText,
  htmlToText,
  manTextToProse,
  sphinxHtmlToText,
  writeCorpus,
  type CorpusDoc,
} from '../src/data/corpora.js';
import { checkDataConfig, languageDataSection, type LanguageDataConfig } from '../src/experiments/language/data.js';
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
  for (const name of ['debian-reference-en', 'debian-reference-es', 'brown', 'fortunes-es', 'manpages-es', 'python-doc', 'linux-doc', 'gcide', 'postgresql-doc', 'manpages-en', 'perl-doc']) assert.match(list.stdout, new RegExp(`^${name}\\s`, 'm'));

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

// ---------------------------------------------------------------------------------------------
// The large English set: Sphinx HTML (python-doc, linux-doc), DocBook HTML (postgresql-doc),
// manual pages (manpages-en, perl-doc) and the dictd dictionary (gcide)
// ---------------------------------------------------------------------------------------------

/** A Sphinx page as both the Python and the kernel documentation build them, cut down by hand. */
const SPHINX_PAGE = `<!DOCTYPE html><html><head><title>4. More Control Flow Tools</title><script>var x = 1;</script></head><body>
<div class="mobile-nav"><nav class="nav-content" role="navigation"><a href="/">Python</a></nav></div>
<div class="sphinxsidebar" role="navigation"><h3>Table of Contents</h3><ul><li><a href="#">4.1. if Statements</a></li></ul></div>
<div class="related" role="navigation"><ul><li><a href="index.html">index</a></li></ul></div>
<div class="document"><div class="body" role="main">
<span id="tut"></span><h1><span class="section-number">4. </span>More Control Flow Tools<a class="headerlink" href="#t" title="Permalink">¶</a></h1>
<p>Besides the <a class="reference internal" href="#while"><code class="xref"><span class="pre">while</span></code></a> statement,
Python uses   the usual <em>flow control</em> statements &mdash; with some twists.</p>
<div class="highlight-python3 notranslate"><div class="highlight"><pre><span class="gp">&gt;&gt;&gt; </span>x = int(input())</pre></div></div>
<div class="toctree-wrapper compound"><ul><li class="toctree-l1"><a href="a.html">4.1. if Statements</a></li></ul></div>
<table class="docutils"><tr><td>x</td><td>y</td></tr></table>
<dl class="py function"><dt class="sig sig-object py" id="len"><span class="sig-name descname">len</span>(<em>s</em>)</dt>
<dd><p>Return the length of an object.</p></dd></dl>
<div class="admonition note"><p class="admonition-title">Note</p><p>Lines are joined.</p></div>
</div></div>
<div class="footer">&copy; Copyright 2001-2023, Python Software Foundation.</div>
</body></html>`;

test('sphinxHtmlToText: only the main body, without code, tables, toctrees, signatures, permalinks or section numbers', () => {
  assert.equal(
    sphinxHtmlToText(SPHINX_PAGE),
    [
      'More Control Flow Tools',
      'Besides the while statement, Python uses the usual flow control statements — with some twists.',
      'Return the length of an object.',
      'Note',
      'Lines are joined.',
    ].join('\n\n'),
  );
  // A page without a role="main" element has no prose.
  assert.equal(sphinxHtmlToText('<html><body><p>only chrome</p></body></html>'), '');
});

test('htmlToText within: nested kept regions and skips inside them', () => {
  const html = '<p>out</p><div role="main"><p>in <b>bold</b></p><div role="main"><p>nested</p></div><div class="x">skip</div><p>end</p></div><p>after</p>';
  assert.equal(htmlToText(html, { within: { attr: 'role', value: 'main' }, skipClasses: ['x'] }), 'in bold\n\nnested\n\nend');
  assert.equal(htmlToText('<p>a</p><table><tr><td>b</td></tr></table><p>c</p>', { skipTags: ['table'] }), 'a\n\nc');
});

test('dropRoffVerbatim: example, no-fill and pod2man verbatim blocks are removed, the rest kept', () => {
  const roff = ['.TH LS 1', '.SH DESCRIPTION', 'List files.', '.EX', 'ls -l /tmp', '.EE', 'More text.', '.nf', 'a  b', '.fi', '.Vb 2', '\\&  my $x = 1;', '.Ve', "'nf", 'quoted', "'fi", 'End.'].join('\n');
  assert.equal(dropRoffVerbatim(roff), ['.TH LS 1', '.SH DESCRIPTION', 'List files.', 'More text.', 'End.'].join('\n'));
});

/** dictd's base-64 digits, written out here independently of the code under test. */
function dictdB64(n: number): string {
  const digits = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  let s = '';
  do {
    s = digits[n % 64] + s;
    n = Math.floor(n / 64);
  } while (n > 0);
  return s;
}

/** A dictd database from entries (headwords → text); `alsoUnder` lists extra headwords pointing at an entry's bytes. */
function dictdDatabase(entries: [string, string][], alsoUnder: [string, number][] = []): { index: string; dict: Buffer } {
  const parts: Buffer[] = [];
  const lines: string[] = [];
  const spans: [number, number][] = [];
  let off = 0;
  for (const [head, text] of entries) {
    const b = Buffer.from(text, 'utf8');
    spans.push([off, b.length]);
    lines.push(`${head}\t${dictdB64(off)}\t${dictdB64(b.length)}`);
    parts.push(b);
    off += b.length;
  }
  for (const [head, i] of alsoUnder) lines.push(`${head}\t${dictdB64(spans[i]![0])}\t${dictdB64(spans[i]![1])}`);
  return { index: lines.join('\n') + '\n', dict: Buffer.concat(parts) };
}

const GCIDE_ABANDON = [
  'Abandon \\A*ban"don\\ ([.a]*b[a^]n"d[u^]n), v. t. [imp. & p. p.',
  '   {Abandoned} (-d[u^]nd); p. pr. & vb. n. {Abandoning}.] [OF.',
  '   abandoner, F. abandonner. See {Ban}.]',
  '   1. To cast or drive out; to banish; to expel; to reject.',
  '      [Obs.]',
  '      [1913 Webster]',
  '',
  '            That he might . . . abandon them from him. --Udall.',
  '      [1913 Webster]',
  '',
  '   2. To give up absolutely; to forsake entirely.',
  '      [1913 Webster]',
  '',
  '   Syn: To give up; yield; forego.',
  '',
].join('\n');

const GCIDE_LAMINA = ['Lamina \\Lam"i*na\\, n.; pl. L. {Lamin[ae]} (-n[=e]).', '   A thin plate or scale; a caf[\'e] layer.', '   [Webster 1913 Suppl. +PJC]', ''].join('\n');

test('dictd: base-64 numbers, entries by offset, shared entries once, metadata left out', () => {
  assert.equal(dictdNumber('BQ+'), 1 * 4096 + 16 * 64 + 62);
  assert.equal(dictdNumber('ES'), 4 * 64 + 18);
  assert.throws(() => dictdNumber('A-'), /not a base-64 number/);
  const db = dictdDatabase(
    [
      ['00-database-info', 'This file was converted...\n'],
      ['Abandon', GCIDE_ABANDON],
      ['Lamina', GCIDE_LAMINA],
    ],
    [['lamina', 2]],
  );
  const entries = dictdEntries(db.index, db.dict);
  assert.deepEqual(entries.map((e) => e.headword), ['Abandon', 'Lamina']);
  assert.equal(entries[1]!.text, GCIDE_LAMINA);
  assert.throws(() => dictdEntries('x\tA\tZZ\n', Buffer.from('short')), /ends past the dictionary/);
});

test('gcideEntryToText: head without pronunciation or etymology, senses as paragraphs, sources dropped, accents', () => {
  assert.equal(
    gcideEntryToText(GCIDE_ABANDON),
    [
      'Abandon, v. t.',
      '1. To cast or drive out; to banish; to expel; to reject. [Obs.]',
      'That he might . . . abandon them from him. --Udall.',
      '2. To give up absolutely; to forsake entirely.',
      'Syn: To give up; yield; forego.',
    ].join('\n\n'),
  );
  assert.equal(gcideEntryToText(GCIDE_LAMINA), 'Lamina, n.; pl. L. Laminæ.\n\nA thin plate or scale; a café layer.');
});

/** A package tree with a copyright file. */
function packageTree(copyrightDir: string, copyright: string): string {
  const root = tmpDir();
  fs.mkdirSync(path.join(root, 'usr/share/doc', copyrightDir), { recursive: true });
  fs.writeFileSync(path.join(root, 'usr/share/doc', copyrightDir, 'copyright'), copyright);
  return root;
}

function readDocs(dir: string): CorpusDoc[] {
  return fs.readFileSync(path.join(dir, 'docs.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as CorpusDoc);
}

const PKG = (name: string) => ({ source: `deb ${name}=1`, url: 'http://example/deb', version: '1' });

test('buildCorpus python-doc: Sphinx pages by path, indexes and assets left out, PSF licence from the free-form copyright file', () => {
  const root = packageTree('python3.11-doc', 'This package was put together by someone.\n\nLicense:\n\nPython License\n==============\nLicense: text quoted from a licence\n');
  const html = path.join(root, 'usr/share/doc/python3.11/html');
  fs.mkdirSync(path.join(html, 'tutorial'), { recursive: true });
  fs.mkdirSync(path.join(html, '_sources'), { recursive: true });
  fs.writeFileSync(path.join(html, 'tutorial/controlflow.html'), SPHINX_PAGE);
  fs.writeFileSync(path.join(html, 'glossary.html'), '<div role="main"><dl><dt>duck-typing</dt><dd><p>A style.</p></dd></dl></div>');
  for (const skipped of ['genindex.html', 'genindex-A.html', 'py-modindex.html', 'search.html', 'contents.html', 'license.html', '_sources/x.html']) {
    fs.writeFileSync(path.join(html, skipped), '<div role="main"><p>should not appear</p></div>');
  }
  const out = tmpDir();
  const m = buildCorpus(CORPORA['python-doc']!, { root, ...PKG('python3.11-doc') }, out);
  assert.equal(m.license, 'PSF-2.0');
  assert.equal(m.license_from, '/usr/share/doc/python3.11-doc/copyright (free-form; read by hand)');
  assert.equal(m.language, 'en');
  const docs = readDocs(path.join(out, 'python-doc'));
  assert.deepEqual(docs.map((d) => d.id), ['glossary.html', 'tutorial/controlflow.html']);
  assert.equal(docs[0]!.text, 'duck-typing\n\nA style.');
  assert.ok(docs[1]!.text.startsWith('More Control Flow Tools\n\nBesides the while statement'));
});

test('buildCorpus linux-doc: the versioned package tree, translations, MAINTAINERS and ABI listings left out, DEP-5 licences', () => {
  const root = packageTree('linux-doc-6.1', 'Format: https://x/\n\nFiles: *\nLicense: GPL-2\n\nFiles: a/*\nLicense: BSD-2-clause\n');
  const html = path.join(root, 'usr/share/doc/linux-doc-6.1/html');
  for (const d of ['process', 'translations/zh_CN', 'admin-guide']) fs.mkdirSync(path.join(html, d), { recursive: true });
  fs.writeFileSync(path.join(html, 'process/howto.html'), '<div role="main" class="document"><h1>HOWTO<a class="headerlink" href="#h">¶</a></h1><p>Read this.</p></div>');
  fs.writeFileSync(path.join(html, 'admin-guide/README.html'), '<div role="main"><p>Kernel <code>make</code> notes.</p><pre>make menuconfig</pre></div>');
  for (const skipped of ['translations/zh_CN/index.html', 'process/maintainers.html', 'admin-guide/abi-testing.html', 'admin-guide/abi.html']) {
    fs.writeFileSync(path.join(html, skipped), '<div role="main"><p>should not appear</p></div>');
  }
  const out = tmpDir();
  const m = buildCorpus(CORPORA['linux-doc']!, { root, ...PKG('linux-doc-6.1') }, out);
  assert.equal(m.license, 'GPL-2, BSD-2-clause');
  assert.equal(m.license_from, '/usr/share/doc/linux-doc-6.1/copyright');
  assert.deepEqual(readDocs(path.join(out, 'linux-doc')), [
    { id: 'admin-guide/README.html', text: 'Kernel make notes.' },
    { id: 'process/howto.html', text: 'HOWTO\n\nRead this.' },
  ]);
});

test('buildCorpus gcide: one document per entry from the dictzip file, named by its own headword', () => {
  const root = packageTree('dict-gcide', 'GCIDE is free software; GNU General Public License, version 2 or later.\n');
  const db = dictdDatabase(
    [
      ['00-database-short', 'The Collaborative International Dictionary of English\n'],
      ['Abandon', GCIDE_ABANDON],
      ['Abandon', 'Abandon \\A*ban"don\\, n.\n   Abandonment. [Obs.]\n   [1913 Webster]\n\n'],
      ['Sundog', 'Sundog \\Sun"dog`\\, n.\n   A luminous spot near the sun.\n   [1913 Webster]\n\n'],
    ],
    [['dog', 3]],
  );
  fs.mkdirSync(path.join(root, 'usr/share/dictd'), { recursive: true });
  fs.writeFileSync(path.join(root, 'usr/share/dictd/gcide.index'), db.index);
  fs.writeFileSync(path.join(root, 'usr/share/dictd/gcide.dict.dz'), zlib.gzipSync(db.dict));
  const out = tmpDir();
  const m = buildCorpus(CORPORA.gcide!, { root, ...PKG('dict-gcide') }, out);
  assert.equal(m.license, 'GPL-2+');
  assert.deepEqual(readDocs(path.join(out, 'gcide')).map((d) => [d.id, d.text.split('\n\n')[0]]), [
    ['Abandon', 'Abandon, v. t.'],
    ['Abandon#2', 'Abandon, n.'],
    ['Sundog', 'Sundog, n.'],
  ]);
});

test('buildCorpus postgresql-doc: DocBook pages without navigation, synopses or listings', () => {
  const root = packageTree('postgresql-doc-15', 'Format: https://x/\n\nFiles: *\nLicense: PostgreSQL\n');
  const html = path.join(root, 'usr/share/doc/postgresql-doc-15/html');
  fs.mkdirSync(html, { recursive: true });
  fs.writeFileSync(
    path.join(html, 'sql-select.html'),
    '<div class="navheader"><a>Prev</a></div><div class="refsynopsisdiv"><h2>Synopsis</h2><pre class="synopsis">SELECT ...</pre></div>' +
      '<p><code class="command">SELECT</code> retrieves rows.</p><div class="table"><table><tr><td>1</td></tr></table></div><pre class="programlisting">SELECT 1;</pre><div class="navfooter">Home</div>',
  );
  const out = tmpDir();
  buildCorpus(CORPORA['postgresql-doc']!, { root, ...PKG('postgresql-doc-15') }, out);
  assert.deepEqual(readDocs(path.join(out, 'postgresql-doc')), [{ id: 'sql-select.html', text: 'Synopsis\n\nSELECT retrieves rows.' }]);
});

test('a package without the expected files is a one-line error naming it', () => {
  const cases: [string, RegExp][] = [
    ['python-doc', /^python3\.11-doc: no HTML pages under \/usr\/share\/doc\/python3\.11\/html in the package$/],
    ['linux-doc', /^linux-doc: no HTML pages under \/usr\/share\/doc\/linux-doc-VERSION\/html in the package$/],
    ['gcide', /^dict-gcide: no \/usr\/share\/dictd\/gcide\.index and gcide\.dict\.dz in the package$/],
    ['postgresql-doc', /^postgresql-doc: no HTML pages under .* in the package$/],
  ];
  for (const [name, re] of cases) {
    const root = packageTree('x', 'Format: x\n\nLicense: X\n');
    const pkgDoc = { 'python-doc': 'python3.11-doc', 'linux-doc': 'linux-doc-6.1', gcide: 'dict-gcide', 'postgresql-doc': 'postgresql-doc-15' }[name]!;
    fs.mkdirSync(path.join(root, 'usr/share/doc', pkgDoc), { recursive: true });
    fs.writeFileSync(path.join(root, 'usr/share/doc', pkgDoc, 'copyright'), 'Format: x\n\nLicense: X\n');
    const out = tmpDir();
    assert.throws(
      () => buildCorpus(CORPORA[name]!, { root, ...PKG(pkgDoc) }, out),
      (e: unknown) => e instanceof UnforgetError && re.test(e.message) && !e.message.includes('\n'),
      name,
    );
    assert.deepEqual(fs.readdirSync(out), [], `${name}: nothing is left behind`);
  }
});

test('CLI: a package apt cannot find is a one-line error; Depends names', () => {
  const cwd = tmpDir();
  const bin = tmpDir();
  // A stand-in apt-get that knows no package, as apt says it; dpkg-deb is never reached.
  fs.writeFileSync(path.join(bin, 'apt-get'), '#!/bin/sh\n[ "$1" = update ] && exit 0\nfor a; do p=$a; done\necho "E: Unable to locate package $p" >&2\nexit 100\n', { mode: 0o755 });
  const env = { ...process.env, PATH: `${bin}:/usr/bin:/bin` };
  const r = spawnSync(process.execPath, [MAIN, 'corpus', 'fetch', 'python-doc', '--out', 'out'], { cwd, env, encoding: 'utf8' });
  assert.equal(r.status, 1, r.stderr);
  const errors = r.stderr.split('\n').filter((l) => l.startsWith('error:'));
  assert.deepEqual(errors, ['error: corpus python-doc: apt-get download --print-uris python3.11-doc failed: E: Unable to locate package python3.11-doc']);
  assert.ok(r.stderr.endsWith(`${errors[0]}\n`));
  assert.ok(!fs.existsSync(path.join(cwd, 'out', 'python-doc')));
  assert.deepEqual(dependsNames('linux-doc-6.1 (= 6.1.192-3), foo | bar:any, baz'), ['linux-doc-6.1', 'foo', 'bar', 'baz']);
});

test('the English set: every English corpus, while lang.old keeps its default', () => {
  assert.deepEqual(ENGLISH_CORPORA, ['debian-reference-en', 'brown', 'python-doc', 'linux-doc', 'gcide', 'postgresql-doc', 'manpages-en', 'perl-doc']);
  const defaults = languageDataSection.parse({}) as LanguageDataConfig;
  assert.deepEqual(defaults.old, ['brown', 'debian-reference-en']);
  checkDataConfig({ ...defaults, old: [...ENGLISH_CORPORA] }, 'lang');
  assert.throws(() => checkDataConfig({ ...defaults, old: [...ENGLISH_CORPORA, 'manpages-es'] }, 'lang'), /corpus 'manpages-es' is in both old and new/);
});
