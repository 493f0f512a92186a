#!/usr/bin/env bash
# The Hugging Face speed and memory comparison of docs/performance.md: unforget vs an eager PyTorch peer of the same
# Llama math (bench/torch_hf_peer.py, Debian python3-torch), row by row on this machine, random weights of the
# SmolLM2-135M and Llama-3.2-1B shapes (bench/configs), T = 512. Uses the AVX-512 OpenBLAS kernels (the
# OPENBLAS_CORETYPE override of these machines is removed for these commands only).
# Output: one JSON line per measurement, then a markdown table.
#   usage: bash bench/compare_hf.sh [--no-torch] [--steps N] [--steps-1b N] > results.jsonl
# The 135M training rows time N steps (default 2) after one warm-up step; the 1B rows, whose steps take minutes in
# PyTorch, time --steps-1b steps (default 1) with no warm-up, in both programs; PyTorch's sampling rows time one call
# without a warm-up call (each takes minutes there).
# Rows: full training of the 135M shape; LoRA r=16 (alpha 32, all linear modules, bf16 base) on the 1B shape; each
# also with kl_pre on self-generated replay (replay batch 4×512 sampled from BOS by π); KV-cache sampling from BOS
# at batch 64 (full length for 135M, 64 new tokens for 1B) from the model in bf16 (π as a bf16 checkpoint is kept;
# PyTorch's peer holds float32 weights).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN="env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE"
TORCH=1
STEPS=2
STEPS1B=1
while [ $# -gt 0 ]; do
  case "$1" in
    --no-torch) TORCH=0 ;;
    --steps) STEPS=$2; shift ;;
    --steps-1b) STEPS1B=$2; shift ;;
  esac
  shift
done
S135=bench/configs/smollm2-135m.json
S1B=bench/configs/llama-3.2-1b.json
UB="$RUN node dist/src/cli/main.js bench model.T=512 opt.batch_size=4"
U="$UB --steps $STEPS --warmup 1"
U1B="$UB --steps $STEPS1B --warmup 0"
# one replay buffer, sampled before timing, covers the warm-up and the timed steps, as the peer samples its batch once
KL="reg.method=kl_pre reg.synth=true reg.batch_size=4 reg.buffer=$((STEPS + 1))"
KL1B="reg.method=kl_pre reg.synth=true reg.batch_size=4 reg.buffer=$STEPS1B"
LORA="model.lora_rank=16 model.lora_alpha=32 --bf16-base"
P="$RUN /usr/bin/python3 bench/torch_hf_peer.py --threads 2 --steps $STEPS"
P1B="$RUN /usr/bin/python3 bench/torch_hf_peer.py --threads 2 --steps $STEPS1B --warmup 0"
out=$(mktemp)
row() { echo "{\"impl\":\"$1\",\"row\":\"$2\",\"r\":$3}" | tee -a "$out"; }
row unforget full "$($U model.config=$S135 --no-sample)"
row unforget full_kl "$($U model.config=$S135 $KL --no-sample)"
row unforget sample_135m "$($U model.config=$S135 --bf16-base --no-train --sample-batch 64)"
row unforget lora "$($U1B model.config=$S1B $LORA --no-sample)"
row unforget lora_kl "$($U1B model.config=$S1B $LORA $KL1B --no-sample)"
row unforget sample_1b "$($U1B model.config=$S1B --bf16-base --no-train --sample-batch 64 --sample-tokens 64 --sample-warmup 0)"
if [ $TORCH = 1 ]; then
  row torch full "$($P --row full --shape smollm2-135m)"
  row torch full_kl "$($P --row full_kl --shape smollm2-135m)"
  row torch sample_135m "$($P1B --row sample --shape smollm2-135m)"
  row torch lora "$($P1B --row lora --shape llama-3.2-1b)"
  row torch lora_kl "$($P1B --row lora_kl --shape llama-3.2-1b)"
  row torch sample_1b "$($P1B --row sample --shape llama-3.2-1b --new-tokens 64)"
fi
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
get = lambda impl, row: next((r["r"] for r in rows if r["impl"] == impl and r["row"] == row), None)
print("\n| row | unforget tok/s | PyTorch tok/s | × | unforget GFLOP/s (% of sgemm 1024³) | unforget peak RSS MB | PyTorch peak RSS MB | RSS ratio |")
print("|---|---|---|---|---|---|---|---|")
for name in ["full", "full_kl", "sample_135m", "lora", "lora_kl", "sample_1b"]:
    u, t = get("unforget", name), get("torch", name)
    if u is None: continue
    samp = name.startswith("sample")
    tok = u["sample_tokens_per_s"] if samp else u["tokens_per_s"]
    gf = u["sample_gflops"] if samp else u["gflops"]
    share = u["sample_share_of_sgemm"] if samp else u["gflops_share_of_sgemm"]
    tt = t["tokens_per_s"] if t else None
    print(f"| {name} | {tok:.1f} | {tt:.1f} | {tok/tt:.2f}× | {gf:.0f} ({100*share:.0f}% of {u['sgemm_1024_gflops']:.0f}) | {u['peak_rss_mb']:.0f} | {t['peak_rss_mb']:.0f} | {u['peak_rss_mb']/t['peak_rss_mb']:.2f} |" if t else
          f"| {name} | {tok:.1f} | - | - | {gf:.0f} ({100*share:.0f}% of {u['sgemm_1024_gflops']:.0f}) | {u['peak_rss_mb']:.0f} | - | - |")
PY
rm -f "$out"
