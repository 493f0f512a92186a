/**
 * Errors a user can cause. The CLI prints `error: <message>` on one line and exits non-zero;
 * any other exception is a bug and is printed with its stack.
 */
export class UnforgetError extends Error {
  override name = 'UnforgetError';
}

/** A config key is unknown, ill-typed or has an impossible value; the message names the dotted key. */
export class ConfigError extends UnforgetError {
  override name = 'ConfigError';
  constructor(readonly key: string, message: string) {
    super(`config key '${key}': ${message}`);
  }
}

/** A file is missing, truncated, corrupt or holds data of the wrong shape; the message names the file. */
export class DataError extends UnforgetError {
  override name = 'DataError';
}

/** Training was stopped because the loss became NaN/Inf. */
export class NonFiniteLossError extends UnforgetError {
  override name = 'NonFiniteLossError';
}

/**
 * The DataError for a failed file-system call on `file`, so that every reader words it alike:
 * `FILE: WHAT not found` when it does not exist, else `FILE: cannot VERB WHAT (CODE)`; without
 * `what`, `FILE: no such file` and `FILE: cannot VERB (CODE)`.
 */
export function fileError(err: unknown, file: string, what?: string, verb = 'read'): DataError {
  const e = err as NodeJS.ErrnoException;
  if (e.code === 'ENOENT') return new DataError(what ? `${file}: ${what} not found` : `${file}: no such file`);
  return new DataError(`${file}: cannot ${verb}${what ? ` ${what}` : ''} (${e.code ?? e.message})`);
}
