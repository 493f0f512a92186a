/** Toy data and configs of the language experiments, shared by their tests and the Slurm test. */
import { writeCorpus } from '../../src/data/corpora.js';

/** Two made-up languages with different letter statistics (so finetuning visibly forgets), as the corpora `brown` (old) and `debian-reference-es` (new), written into `dir`. */
export function fakeCorpora(dir: string): void {
  let seed = 12345;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const words = (alphabet: string, n: number) =>
    Array.from({ length: n }, () => Array.from({ length: 2 + Math.floor(rand() * 6) }, () => alphabet[Math.floor(rand() * alphabet.length)]).join('')).join(' ');
  const docs = (alphabet: string, count: number) => Array.from({ length: count }, (_, i) => ({ id: String(i), text: `${words(alphabet, 60)}.\n\n${words(alphabet, 40)}.` }));
  const meta = (language: string) => ({ language, description: 'test corpus', source: 'test', url_or_origin: 'test', license: 'CC0', license_from: 'test', cleaning: 'none' });
  writeCorpus(dir, 'brown', docs('etaoinshrdlu', 120), meta('en'));
  writeCorpus(dir, 'debian-reference-es', docs('aeosnrlidñúé¿¡', 120), meta('es'));
}

export const TINY = ['model.L=1', 'model.H=8', 'model.T=32', 'opt.batch_size=8', 'data.num_tokens_valid=2048', 'lang.vocab_size=300', 'lang.old=brown', 'lang.new=debian-reference-es', 'lang.corpora_dir=corpora', 'log.progress=false', 'run.threads=1', 'opt.warmup_tokens=1000', 'reg.buffer=2', 'reg.batch_size=4'];
export const CAP = [...TINY, 'capacity.widths=[16,32]', 'capacity.tokens_per_param=[1,2]', 'capacity.max_epochs=null', 'capacity.auto_tokens=4096', 'capacity.max_tokens=16384', 'capacity.every_tokens=1024', 'capacity.finetune_warmup_tokens=0', 'opt.lr=0.01', 'capacity.finetune_lr=0.01'];

