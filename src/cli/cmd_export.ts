/**
 * `unforget export --model DIR --format npz|safetensors [--out DIR2]`: converts a checkpoint between
 * our safetensors folder and the study's reference folder (weights.npz + config.yaml), either way.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { UnforgetError } from '../errors.js';
import { checkpointPaths, exportCheckpoint, type WeightsFormat } from '../model/checkpoint.js';

export function cmdExport(args: string[]): void {
  const { values } = parseArgs({
    args,
    options: { model: { type: 'string' }, format: { type: 'string' }, out: { type: 'string' } },
    strict: true,
  });
  if (!values.model) throw new UnforgetError('export: --model DIR is required');
  if (values.format !== 'npz' && values.format !== 'safetensors') {
    throw new UnforgetError(`export: --format must be 'npz' or 'safetensors', got '${values.format ?? ''}'`);
  }
  const format: WeightsFormat = values.format;
  const out = values.out ?? `${path.resolve(checkpointPaths(values.model).dir)}-${format}`;
  const r = exportCheckpoint(values.model, format, out);
  process.stdout.write(JSON.stringify(r) + '\n');
}
