#!/usr/bin/env bash
# The speed comparison of the README: unforget vs an eager PyTorch implementation of the same model
# (bench/torch_peer.py, Debian python3-torch), one config after another on this machine.
# Uses the AVX-512 OpenBLAS kernels (the OPENBLAS_CORETYPE override of these machines is removed for
# this command only). Output: one JSON line per measurement, then a markdown table.
#   usage: bash bench/compare.sh [--no-torch] > results.jsonl
set -euo pipefail
cd "$(dirname "$0")/.."
RUN="env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE"
TORCH=1
[ "${1:-}" = "--no-torch" ] && TORCH=0
CONFIGS=("128 4 32 128 4096 32" "256 2 16 14 20 256" "256 6 64 256 4096 16")
STEPS=("15" "25" "6")
# Sampling runs per measurement (both programs): one run of the small models takes milliseconds.
SAMPLE_REPS=("3" "20" "1")
out=$(mktemp)
for i in "${!CONFIGS[@]}"; do
  set -- ${CONFIGS[$i]}
  D=$1 L=$2 H=$3 T=$4 V=$5 B=$6 S=${STEPS[$i]} R=${SAMPLE_REPS[$i]}
  m="model.D=$D model.L=$L model.H=$H model.T=$T model.V=$V opt.batch_size=$B"
  echo "{\"impl\":\"unforget\",\"mode\":\"train\",\"r\":$($RUN node dist/src/cli/main.js bench $m --steps $S --warmup 2 --sample-reps $R)}" | tee -a "$out"
  echo "{\"impl\":\"unforget\",\"mode\":\"kl\",\"r\":$($RUN node dist/src/cli/main.js bench $m reg.method=kl_pre --steps $S --warmup 2 --no-sample)}" | tee -a "$out"
  if [ $TORCH = 1 ]; then
    for mode in train kl sample; do
      steps=$S; [ $mode = sample ] && steps=$R
      echo "{\"impl\":\"torch\",\"mode\":\"$mode\",\"r\":$($RUN /usr/bin/python3 bench/torch_peer.py --D $D --L $L --H $H --T $T --V $V --mode $mode --steps $steps --threads 2 $([ $mode = sample ] && echo "--batch 64" || echo "--batch $B"))}" | tee -a "$out"
    done
  fi
done
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def get(impl, mode, cfg):
    for r in rows:
        x = r["r"]
        if r["impl"] == impl and r["mode"] == mode and (x["D"], x["L"], x["H"], x["T"], x["V"]) == cfg:
            return x
cfgs = []
for r in rows:
    x = r["r"]; c = (x["D"], x["L"], x["H"], x["T"], x["V"])
    if c not in cfgs: cfgs.append(c)
print("\n| (D, L, H, T, V, batch) | train tok/s (torch) | ×  | +KL tok/s (torch) | × | sampling tok/s (torch) | × | GFLOP/s (% of sgemm) | peak RSS MB (torch) |")
print("|---|---|---|---|---|---|---|---|---|")
for c in cfgs:
    u, uk, t, tk, ts = get("unforget","train",c), get("unforget","kl",c), get("torch","train",c), get("torch","kl",c), get("torch","sample",c)
    f = lambda a, b, k: f"{a[k]/1000:.1f}k ({b['tokens_per_s']/1000:.2f}k)" if b else f"{a[k]/1000:.1f}k"
    x = lambda a, b, k: f"{a[k]/b['tokens_per_s']:.1f}×" if b else "-"
    print(f"| {c + (u['batch'],)} | {f(u,t,'tokens_per_s')} | {x(u,t,'tokens_per_s')} | {f(uk,tk,'tokens_per_s')} | {x(uk,tk,'tokens_per_s')} | "
          f"{f(u,ts,'sample_tokens_per_s')} | {x(u,ts,'sample_tokens_per_s')} | {u['gflops']:.0f} ({100*u['gflops_share_of_sgemm']:.0f}% of {u['sgemm_1024_gflops']:.0f}) | "
          f"{u['peak_rss_mb']:.0f}" + (f" ({t['peak_rss_mb']:.0f})" if t else "") + " |")
PY
rm -f "$out"
