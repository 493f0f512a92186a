/**
 * Preloaded (`node --import`) into every run a sweep starts. The sweep talks to its runs over an IPC
 * channel; when the sweep process dies — even by SIGKILL, which it cannot handle — the channel closes
 * and the run stops instead of training on as an orphan that a restarted sweep would race with.
 */
if (process.channel) {
  // The channel alone must not keep a finished run alive.
  process.channel.unref();
  process.on('disconnect', () => {
    process.stderr.write('sweep process gone: stopping this run\n');
    process.exit(129);
  });
}

export {};
