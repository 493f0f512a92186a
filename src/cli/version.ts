/** The installed package's version, read from its package.json at run time so it cannot drift from a release. */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Walks up from this module (dist/src/cli when compiled, src/cli from sources) to the first
 * package.json named `unforget`; the walk, rather than a fixed depth, keeps working from either place.
 */
export function packageVersion(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const file = path.join(dir, 'package.json');
    if (fs.existsSync(file)) {
      const pkg = JSON.parse(fs.readFileSync(file, 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === 'unforget' && typeof pkg.version === 'string') return pkg.version;
    }
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`no package.json of unforget above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}
