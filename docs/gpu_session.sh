#!/bin/bash
# What was run on the lent GPU machine for docs/benchmarks.md (one NVIDIA H200; its image has
# torch but not albumentations, whose wheels travel in .whl/: make it here with
# `bash docs/gpu_wheels.sh`, and name .whl in the device tool's carry). From the repository root:
#   bash docs/gpu_session.sh OUTDIR [part ...]      parts: info tests eager compile scaling curves profile batch8 fastpath resident stepgraph stepgraph256
# The acceptance run for a lent GPU is tests/gpu/accept.sh (one 8-minute call); these parts are
# the longer measurements behind docs/benchmarks.md, one or two per device call. Each part runs
# with errexit and pipefail; the script exits 1 when any part failed.
set -u
OUTDIR=${1:?usage: gpu_session.sh OUTDIR [part ...]}; shift
PARTS=${*:-info tests}
mkdir -p "$OUTDIR"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD || exit 1
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
PEAK=989   # dense bf16 TFLOP/s of an H100/H200 SXM by the datasheet
bench() { python3 -m cyclegan bench --device cuda --peak-tflops $PEAK --warmup 5 --iters 10 --repeats 5 "$@"; }

run_part() {
  local part=$1
  case $part in
    info)
      nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
      python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(), 'cudnn', torch.backends.cudnn.version())"
      ;;
    tests)
      python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py 2>&1 | tail -15
      ;;
    eager)   # every precision x memory format, training and translation, 256 px, batch 1 and 8
      bench --mode train translate --size 256 --batch-size 1 8 --precision fp32 bf16 fp16 \
        --channels-last off on --compile off --json "$OUTDIR/bench_eager.json" --markdown
      ;;
    compile)
      bench --mode train translate --size 256 --batch-size 1 8 --precision bf16 --channels-last on \
        --compile on --json "$OUTDIR/bench_compile.json" --markdown
      bench --mode train translate --size 256 --batch-size 1 8 --precision bf16 --channels-last on \
        --compile on --compile-mode reduce-overhead --json "$OUTDIR/bench_compile_ro.json" --markdown
      ;;
    scaling) # cost against image size and batch
      bench --mode train --size 128 256 512 --batch-size 1 4 8 --precision bf16 --channels-last on \
        --compile off --warmup 3 --iters 5 --repeats 3 --json "$OUTDIR/bench_scaling.json" --markdown
      ;;
    profile) # kernel time by kind at batch 8 (docs/gpu_profile.py); which Triton kernels inductor
             # makes of a ResNet block (norm + ReLU + reflection pad in one pass?)
      python3 docs/fusion_probe.py --device cuda --precision bf16 --channels 256 --size 64 --batch-size 8 \
        2>&1 | grep -v "^W" | tee "$OUTDIR/fusion_probe.txt"
      python3 docs/gpu_profile.py --size 256 --batch-size 8 --precision bf16 --channels-last off --compile off \
        --json "$OUTDIR/profile_eager.json"
      for cl in off on; do
        python3 docs/gpu_profile.py --size 256 --batch-size 8 --precision bf16 --channels-last $cl --compile on \
          --json "$OUTDIR/profile_compile_cl$cl.json"
      done
      ;;
    batch8)  # the fraction-of-peak row: batch 8, bf16, CUDA graphs, both memory formats
      bench --mode train --size 256 --batch-size 8 --precision bf16 --channels-last off on --compile on \
        --compile-mode reduce-overhead --json "$OUTDIR/bench_batch8.json" --markdown
      ;;
    fastpath) # issue 15: what --precision/--compile auto give on CUDA, and the real `cyclegan train`
              # loop end to end (data, EMA, logging) at 32 px (target <= 8 ms/iter) and 256 px (<= 15)
      python3 -m pytest -q -p no:cacheprovider tests/test_fastpath.py 2>&1 | tail -3
      python3 -c "from cyclegan.core import fastpath; print(fastpath.choose('cuda', 'train'))"
      for size in 32 256; do
        net=$([ $size = 32 ] && echo resnet_6blocks || echo resnet_9blocks)
        python3 -m cyclegan bench --device cuda --mode loop train --size $size --netG $net --precision fp32 auto \
          --channels-last off --compile off on --compile-mode reduce-overhead --warmup 20 --iters 100 --repeats 1 \
          --json "$OUTDIR/loop_$size.json" --markdown
      done
      ;;
    resident) # issue 15: the real `cyclegan train` loop with the images held and cropped on the GPU
              # (--mode loop-dev: train's --data-on-device on) beside the DataLoader (loop), at 32 px
              # (ResNet-6, grayscale as in the issue) and 256 px (ResNet-9, RGB), fp32 and auto. On folders
              # big enough that no epoch ends in a timed run: every epoch end writes a checkpoint (~320 MB
              # at ngf 64); the last row times an 8-image folder, one epoch end every 8 iterations, to show
              # what that costs. One JSON per call, rewritten after each row; about 5 minutes.
      python3 -m pytest -q -p no:cacheprovider tests/test_resident.py 2>&1 | tail -3   # its CUDA test included
      python3 -c "import sys; from pathlib import Path; from cyclegan.bench.loop import synthetic_folder as f
f(Path(sys.argv[1]) / 'gray32', 32, count=400, channels=1); f(Path(sys.argv[1]) / 'rgb256', 256, count=80)
f(Path(sys.argv[1]) / 'gray32_8', 32, count=8, channels=1)" /tmp/resident_data
      loop32() { python3 -m cyclegan bench --device cuda --size 32 --netG resnet_6blocks --loop-channels 1 \
        --channels-last off --warmup 10 --iters 100 --repeats 1 --markdown "$@"; }
      loop32 --mode loop loop-dev --dataroot /tmp/resident_data/gray32 --precision fp32 auto --compile off \
        --json "$OUTDIR/resident_32.json" 2>&1 | tee "$OUTDIR/resident_32.txt"
      loop32 --mode loop loop-dev --dataroot /tmp/resident_data/gray32 --precision auto --compile on \
        --compile-mode reduce-overhead --json "$OUTDIR/resident_32_graphs.json" 2>&1 | tee "$OUTDIR/resident_32_graphs.txt"
      loop32 --mode loop-dev --dataroot /tmp/resident_data/gray32_8 --precision auto --compile off \
        --json "$OUTDIR/resident_32_8images.json" 2>&1 | tee "$OUTDIR/resident_32_8images.txt"
      python3 -m cyclegan bench --device cuda --mode loop loop-dev --size 256 --netG resnet_9blocks \
        --dataroot /tmp/resident_data/rgb256 --precision fp32 auto --channels-last off --compile off \
        --warmup 5 --iters 40 --repeats 1 --json "$OUTDIR/resident_256.json" --markdown 2>&1 | tee "$OUTDIR/resident_256.txt"
      ;;
    stepgraph) # issue 15 parts 3 and 4: the whole training step as one CUDA graph (train's --step-graph).
               # Its CUDA tests first (each model kind's replays = its planned steps, recapture at a
               # new learning rate, a NaN roll-back, a run that saves and resumes); then the synthetic
               # step at 32 px and the real loop at 32 px, ResNet-6 grayscale, images on the GPU
               # (target <= 8 ms/iter) beside per-network graphs (--compile reduce-overhead); then the
               # synthetic step at 256 px. About 6 minutes; the 256 px loop is part stepgraph256.
      python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_step_graph.py 2>&1 | tail -8 | tee "$OUTDIR/stepgraph_tests.txt"
      bench --mode train --size 32 --netG resnet_6blocks --precision bf16 --channels-last off --compile off \
        --step-graph --json "$OUTDIR/stepgraph_train32.json" --markdown 2>&1 | tee "$OUTDIR/stepgraph_train32.txt"
      python3 -c "import sys; from pathlib import Path; from cyclegan.bench.loop import synthetic_folder as f
f(Path(sys.argv[1]) / 'gray32', 32, count=400, channels=1)" /tmp/sg_data
      sg32() { python3 -m cyclegan bench --device cuda --size 32 --netG resnet_6blocks --loop-channels 1 \
        --dataroot /tmp/sg_data/gray32 --channels-last off --warmup 10 --iters 200 --markdown "$@"; }
      sg32 --mode loop-dev --precision auto --compile off --step-graph --repeats 2 --json "$OUTDIR/stepgraph_32.json" \
        2>&1 | tee "$OUTDIR/stepgraph_32.txt"
      # inductor's fused kernels inside the one graph: fewer kernels per replay (each costs a few us
      # on the GPU even when replayed; the eager step is thousands of them). Each run compiles.
      sg32 --mode loop-dev --precision auto --compile on --step-graph --repeats 1 \
        --json "$OUTDIR/stepgraph_32_inductor.json" 2>&1 | tee "$OUTDIR/stepgraph_32_inductor.txt"
      sg32 --mode loop-dev --precision auto --compile on --compile-mode reduce-overhead --repeats 1 \
        --json "$OUTDIR/stepgraph_32_baseline.json" 2>&1 | tee "$OUTDIR/stepgraph_32_baseline.txt"
      sg32 --mode loop --precision auto --compile off --step-graph --repeats 1 \
        --json "$OUTDIR/stepgraph_32_dataloader.json" 2>&1 | tee "$OUTDIR/stepgraph_32_dataloader.txt"
      # the synthetic step alone at 256 px, against the table's 21.7 ms (bf16 + per-network graphs)
      bench --mode train --size 256 --batch-size 1 8 --precision bf16 --channels-last on --compile off \
        --step-graph --json "$OUTDIR/stepgraph_train256.json" --markdown 2>&1 | tee "$OUTDIR/stepgraph_train256.txt"
      ;;
    stepgraph256) # the real loop at 256 px with the step graph, ResNet-9, batch 1 (target <= 15 ms/iter)
                  # and 8 (target >= 35% of the bf16 peak): eager networks, then inductor's. ~4 minutes.
      python3 -c "import sys; from pathlib import Path; from cyclegan.bench.loop import synthetic_folder as f
f(Path(sys.argv[1]) / 'rgb256', 256, count=400)" /tmp/sg_data
      python3 -m cyclegan bench --device cuda --mode loop-dev --size 256 --netG resnet_9blocks --batch-size 1 8 \
        --dataroot /tmp/sg_data/rgb256 --precision auto --channels-last off on --compile off --step-graph \
        --warmup 5 --iters 40 --repeats 1 --peak-tflops $PEAK --json "$OUTDIR/stepgraph_256.json" --markdown \
        2>&1 | tee "$OUTDIR/stepgraph_256.txt"
      python3 -m cyclegan bench --device cuda --mode loop-dev --size 256 --netG resnet_9blocks --batch-size 1 8 \
        --dataroot /tmp/sg_data/rgb256 --precision auto --channels-last on --compile on --step-graph \
        --warmup 5 --iters 40 --repeats 1 --peak-tflops $PEAK --json "$OUTDIR/stepgraph_256_inductor.json" \
        --markdown 2>&1 | tee "$OUTDIR/stepgraph_256_inductor.txt"
      ;;
    curves)  # loss curves of the fast paths against the fp32 eager baseline, 200 iterations
      python3 docs/speed_curves.py --device cuda --size 256 --iters 200 --json "$OUTDIR/curves.json"
      ;;
    *) echo "unknown part $part" >&2; return 2 ;;
  esac
}

failed=""
for part in $PARTS; do
  echo "=== $part $(date -u +%H:%M:%S)"
  ( set -e -o pipefail; run_part "$part" ) || { echo "=== $part FAILED"; failed="$failed $part"; }
done
echo "=== done $(date -u +%H:%M:%S); failed:${failed:- none}"
[ -z "$failed" ]
