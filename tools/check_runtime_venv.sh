#!/usr/bin/env bash
# Prove that requirements-runtime.txt alone runs the camloc CLI on exported models.
#
#   tools/check_runtime_venv.sh [DEV_PYTHON]
#
# DEV_PYTHON (default: python3) has the full requirements (torch) and exports the default
# model as FP32 and INT8 (calibrated on the bundled demo clip). A fresh virtual environment
# with ONLY requirements-runtime.txt (kept in .cache/runtime-venv and rebuilt when that file
# changes) must then: not be able to import torch, torchvision or onnx, run
# `python -m realtime` on both models, writing one JSON line per frame, and run
# `python -m realtime.evaluate` on a tiny box-labelled set (two frames of the clip), its
# --store-threshold refused in one line with the install hint (writing needs onnx).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEV_PY=${1:-python3}
VENV=${CAMLOC_RUNTIME_VENV:-$ROOT/.cache/runtime-venv}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

stamp=$(sha256sum requirements-runtime.txt | cut -c1-16)
if [[ ! -x "$VENV/bin/python" || "$(cat "$VENV/.camloc-stamp" 2>/dev/null)" != "$stamp" ]]; then
    echo "check_runtime_venv: building $VENV from requirements-runtime.txt"
    rm -rf "$VENV"
    "$DEV_PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -r requirements-runtime.txt
    echo "$stamp" > "$VENV/.camloc-stamp"
fi
for mod in torch torchvision onnx; do
    if "$VENV/bin/python" -c "import $mod" 2>/dev/null; then
        echo "check_runtime_venv: FAIL: $mod is importable in the runtime venv" >&2; exit 1
    fi
done

"$DEV_PY" -m export --model efficientnet_lite0 --output "$WORK/lite0.onnx" -q
"$DEV_PY" -m export --model "$WORK/lite0.onnx" --output "$WORK/lite0.int8.onnx" --int8 \
    --calib assets/demo.mp4 --calib-frames 48 -q

for model in lite0.onnx lite0.int8.onnx; do
    # run from outside the checkout so nothing but PYTHONPATH points at the code
    (cd "$WORK" && PYTHONPATH="$ROOT" CAMLOC_HOME="$WORK/home" "$VENV/bin/python" -m realtime \
        --model "$WORK/$model" --source "$ROOT/assets/demo.mp4" --max-frames 12 \
        --save-json "$WORK/$model.jsonl" --save "$WORK/$model.mp4")
    lines=$(wc -l < "$WORK/$model.jsonl")
    if [[ "$lines" -ne 12 ]]; then
        echo "check_runtime_venv: FAIL: $model wrote $lines JSON lines, expected 12" >&2; exit 1
    fi
done
# a tiny COCO set: two frames of the clip, each boxed as its middle (class-agnostic)
"$VENV/bin/python" - "$ROOT/assets/demo.mp4" "$WORK/evalset" <<'EOF'
import json, pathlib, sys
import cv2
clip, out = cv2.VideoCapture(sys.argv[1]), pathlib.Path(sys.argv[2])
out.mkdir()
images, boxes = [], []
for i in range(2):
    ok, frame = clip.read()
    assert ok, "cannot read the demo clip"
    h, w = frame.shape[:2]
    cv2.imwrite(str(out / f"{i}.jpg"), frame)
    images.append({"id": i, "file_name": f"{i}.jpg", "width": w, "height": h})
    boxes.append({"id": i, "image_id": i, "category_id": 1,
                  "bbox": [w // 8, h // 8, 3 * w // 4, 3 * h // 4]})
coco = {"images": images, "annotations": boxes, "categories": [{"id": 1, "name": "object"}]}
(out / "labels.json").write_text(json.dumps(coco))
EOF
evaluate=("$VENV/bin/python" -m realtime.evaluate --model "$WORK/lite0.onnx" --class-agnostic
          --source "$WORK/evalset" --labels "$WORK/evalset/labels.json")
(cd "$WORK" && PYTHONPATH="$ROOT" CAMLOC_HOME="$WORK/home" "${evaluate[@]}" --json "$WORK/m.json")
"$VENV/bin/python" -c 'import json, sys; m = json.load(open(sys.argv[1]));
assert 0 <= m["maxboxacc_v2"] <= 1 and 0 <= m["best_threshold"] < 1, m' "$WORK/m.json"
set +e
(cd "$WORK" && PYTHONPATH="$ROOT" CAMLOC_HOME="$WORK/home" "${evaluate[@]}" --store-threshold \
    2> "$WORK/store.err")
rc=$?
set -e
if [[ $rc -ne 2 ]] || ! grep -q "pip install onnx" "$WORK/store.err"; then
    echo "check_runtime_venv: FAIL: evaluate --store-threshold without onnx gave exit $rc:" >&2
    cat "$WORK/store.err" >&2; exit 1
fi
echo "check_runtime_venv: ok (runtime venv without torch/onnx ran FP32 and INT8 models, and" \
     "realtime.evaluate)"
