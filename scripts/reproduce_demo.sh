#!/usr/bin/env bash
# Rebuild the bundled demo encoders and probes and measure them, in one go:
#   generate the family sets and the real-recordings split → continue the two project
#   encoders' pretext on the wider material → extract features → train the demo probes on
#   every family (calibrated on val) → leave-one-family-out matrix and real-recording false
#   fakes (recorded in the cards) → explanation comparison → verdict benchmark → demo reports.
# Writes assets/encoders/*, assets/probes/*, docs/*; takes about two hours on 2 CPU cores.
# Usage: bash scripts/reproduce_demo.sh [WORK_DIR]   (default data/demo-build)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-data/demo-build}
export AVXPLAIN_HOME="$WORK/home"
FAMILIES="$WORK/generalisation/families"
python cli.py generate --kind families --n 10 --seed 1101 --out "$FAMILIES" --split train
python cli.py generate --kind families --n 4 --seed 1202 --out "$FAMILIES" --split val
python cli.py generate --kind families --n 6 --seed 1303 --out "$FAMILIES" --split test --faces heldout
python cli.py generate --kind real-recordings --seed 505 --out "$WORK/generalisation/real" --split real
# the audio encoder continues from the first release's weights (6,000 steps from scratch on
# espeak voices, see docs/RESEARCH.md), kept in git history; the face encoder starts afresh
for part in safetensors json; do git show "f0bfb23:assets/encoders/selfsplice-gru.$part" > "$WORK/selfsplice-gru.$part"; done
python cli.py pretrain selfsplice-gru --steps 2000 --lr 2e-4 --init "$WORK/selfsplice-gru.safetensors" \
  --out assets/encoders
python cli.py pretrain selfblend-cnn --data "$FAMILIES/dataset.json" --steps 1500 --out assets/encoders
python cli.py extract --data "$FAMILIES/dataset.json" --encoder selfsplice-gru --encoder selfblend-cnn
# the audio probe carries a next-step model of the real clips: the leave-one-family-out
# matrix favours that over the head alone (bench_generalisation's last line per modality)
python cli.py train --data "$FAMILIES/dataset.json" --encoder selfsplice-gru --target audio \
  --out assets/probes --name demo/audio-selfsplice --lr 1e-2 --epochs 150 --patience 15 --with-real-model
python cli.py train --data "$FAMILIES/dataset.json" --encoder selfblend-cnn --target visual \
  --out assets/probes --name demo/visual-selfblend --lr 1e-2 --epochs 150 --patience 15
python -m benchmarks.bench_generalisation --data "$WORK/generalisation" --out docs/bench_generalisation.json \
  --into-cards | tee docs/bench_generalisation.txt
python -m benchmarks.bench_explanations --data "$WORK/generalisation" --out docs/bench_explanations.json \
  --into-cards | tee docs/bench_explanations.txt
for clip in real audio_fake visual_fake both_fake; do   # the figures shown in the README
  python cli.py analyze "assets/demo/$clip.mp4" --out "docs/demo/$clip"   # the default set, verdict first
done
python -m benchmarks.bench_verdicts --out docs/bench_verdicts.json   # how far the verdict can be trusted
