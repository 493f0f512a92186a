/** `unforget train [CONFIG.yaml ...] [key=value ...]`: pretrain, or finetune with model.load_path=DIR. */
import { loadConfig } from '../config/load.js';
import { train } from '../train/train.js';
import { splitArgs, withInterrupt } from './args.js';

export async function cmdTrain(args: string[]): Promise<void> {
  const { files, overrides } = splitArgs(args);
  const cfg = loadConfig(files, overrides);
  await withInterrupt(cfg.log.progress, async (hooks) => {
    const { runDir, summary } = await train(cfg, hooks);
    process.stderr.write(`run folder: ${runDir}\n`);
    process.stdout.write(JSON.stringify(summary) + '\n');
  });
}
