#!/usr/bin/env bash
# Rebuild the bundled demo encoders and probes and measure them, in one go:
#   generate the synthetic sets → pretrain the two project encoders → extract features →
#   train the demo probes → evaluate on held-out faces and voices → spatial pointing game.
# Writes assets/encoders/*, assets/probes/*, docs/demo/*; takes about an hour and a half on 2 CPU cores.
# Usage: bash scripts/reproduce_demo.sh [WORK_DIR]   (default data/demo-build)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-data/demo-build}
export AVXPLAIN_HOME="$WORK/home"
python cli.py generate --n 160 --seed 101 --out "$WORK/set" --split train
python cli.py generate --n 40 --seed 202 --out "$WORK/set" --split val
# the visual probe's larger set (its first 160 + 40 clips are the set above): 30 fake
# validation videos instead of 10 for early stopping
python cli.py generate --n 480 --seed 101 --out "$WORK/big" --split train
python cli.py generate --n 120 --seed 202 --out "$WORK/big" --split val
python cli.py generate --n 80 --seed 303 --out "$WORK/test" --split test --faces heldout
python cli.py pretrain selfsplice-gru --out assets/encoders --steps 6000 --utterances 3000
python cli.py pretrain selfblend-cnn --data "$WORK/set/dataset.json" --out assets/encoders --steps 1500 --lr 2e-3
python cli.py extract --data "$WORK/set/dataset.json" --split train --split val --encoder selfsplice-gru
python cli.py extract --data "$WORK/big/dataset.json" --split train --split val --encoder selfblend-cnn
python cli.py extract --data "$WORK/test/dataset.json" --split test --encoder selfsplice-gru --encoder selfblend-cnn
python cli.py train --data "$WORK/set/dataset.json" --encoder selfsplice-gru --target audio \
  --out assets/probes --name demo/audio-selfsplice --lr 1e-2 --epochs 300 --patience 30
python cli.py train --data "$WORK/big/dataset.json" --encoder selfblend-cnn --target visual \
  --out assets/probes --name demo/visual-selfblend --lr 1e-2 --epochs 300 --patience 30
# the verdict's calibration: a fresh split of the training identities, sequences of 2-120 s
python cli.py generate --n 120 --seed 404 --out "$WORK/calib" --split calib
python cli.py calibrate --data "$WORK/calib/dataset.json" --split calib --probe demo/audio-selfsplice --target audio \
  --into-card assets/probes/demo_audio-selfsplice.json
python cli.py calibrate --data "$WORK/calib/dataset.json" --split calib --probe demo/visual-selfblend --target visual \
  --into-card assets/probes/demo_visual-selfblend.json
python cli.py evaluate --probe assets/probes/demo_audio-selfsplice.json --data "$WORK/test/dataset.json" \
  --target audio --out docs/demo/audio --into-card
python cli.py evaluate --probe assets/probes/demo_visual-selfblend.json --data "$WORK/test/dataset.json" \
  --target visual --out docs/demo/visual --into-card
python cli.py spatial-eval --data "$WORK/test/dataset.json" --split test --probe demo/visual-selfblend \
  --every 3 --out docs/demo/spatial --into-card assets/probes/demo_visual-selfblend.json
for clip in real audio_fake visual_fake both_fake; do   # the figures shown in the README
  python cli.py analyze "assets/demo/$clip.mp4" --out "docs/demo/$clip"   # the default set, verdict first
done
python -m benchmarks.bench_verdicts --out docs/bench_verdicts.json   # how far the verdict can be trusted
