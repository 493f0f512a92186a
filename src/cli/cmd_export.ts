/**
 * `unforget export --model DIR --format npz|safetensors [--out DIR2]`: converts a checkpoint between
 * our safetensors folder and the study's reference folder (weights.npz + config.yaml), either way.
 * `unforget export --model DIR --merge [--base BASE] --out DIR2`: a LoRA run (or any PEFT adapter folder) merged into
 * its base model, written as a Hugging Face folder.
 */
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { UnforgetError } from '../errors.js';
import { checkpointPaths, exportCheckpoint, type WeightsFormat } from '../model/checkpoint.js';
import { isAdapterFolder, loadModelFolder, saveHFModel } from '../model/load.js';

export function cmdExport(args: string[]): void {
  const { values } = parseArgs({
    args,
    options: { model: { type: 'string' }, format: { type: 'string' }, out: { type: 'string' }, merge: { type: 'boolean' }, base: { type: 'string' } },
    strict: true,
  });
  if (!values.model) throw new UnforgetError('export: --model DIR is required');
  if (values.merge) return exportMerged(values.model, values.base ?? null, values.out);
  if (values.base !== undefined) throw new UnforgetError('export: --base goes with --merge');
  if (values.format !== 'npz' && values.format !== 'safetensors') {
    throw new UnforgetError(`export: --format must be 'npz' or 'safetensors', got '${values.format ?? ''}'`);
  }
  const format: WeightsFormat = values.format;
  const out = values.out ?? `${path.resolve(checkpointPaths(values.model).dir)}-${format}`;
  const r = exportCheckpoint(values.model, format, out);
  process.stdout.write(JSON.stringify(r) + '\n');
}

function exportMerged(dir: string, base: string | null, out: string | undefined): void {
  if (!out) throw new UnforgetError('export: --merge needs --out DIR (the merged model folder)');
  if (!isAdapterFolder(dir)) throw new UnforgetError(`export: --merge needs a LoRA run or PEFT adapter folder, and ${dir} has no adapter_config.json`);
  if (fs.existsSync(out) && (!fs.statSync(out).isDirectory() || fs.readdirSync(out).length > 0)) {
    throw new UnforgetError(`export: ${out} exists and is not an empty folder; choose another --out (nothing was written)`);
  }
  const loaded = loadModelFolder(dir, { base });
  // Assembled beside `out` and renamed into place, so `out` appears complete or not at all.
  const parent = path.dirname(path.resolve(out));
  fs.mkdirSync(parent, { recursive: true });
  const tmp = path.join(parent, `.${path.basename(out)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    saveHFModel(tmp, loaded.model, { bosId: loaded.hf?.bosId ?? null, eosIds: loaded.hf?.eosIds ?? [], tokenizerFrom: loaded.hf?.dir ?? null });
    if (fs.existsSync(out)) fs.rmdirSync(out);
    fs.renameSync(tmp, out);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  process.stdout.write(JSON.stringify({ out, format: 'hf', merged: true }) + '\n');
}
