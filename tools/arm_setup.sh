#!/usr/bin/env bash
# Build an arm64 Python 3.11 with onnxruntime, numpy and opencv-python-headless that runs
# on this x86 machine under qemu user-mode emulation, for tools/arm_check.py.
#   bash tools/arm_setup.sh DIR      -> DIR/root (Debian arm64 packages), DIR/site (wheels)
# Needs root (apt-get) and Debian bookworm (python3.11); installs qemu-user. Nothing of the
# host's amd64 system is replaced: the arm64 packages are only unpacked into DIR/root.
set -euo pipefail
dir=$(realpath -m "${1:?usage: tools/arm_setup.sh DIR}")
mkdir -p "$dir/debs" "$dir/root" "$dir/site" "$dir/wheels"
dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user >/dev/null
cd "$dir/debs"
apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
    --no-replaces --no-enhances python3.11:arm64 libstdc++6:arm64 libgcc-s1:arm64 \
  | grep -E '^[a-z0-9].*:arm64$' | sort -u > packages.txt
apt-get download -qq $(cat packages.txt)
for deb in *.deb; do dpkg -x "$deb" "$dir/root"; done
python3 -m pip download -q --only-binary=:all: --python-version 3.11 \
    --platform manylinux2014_aarch64 --platform manylinux_2_28_aarch64 -d "$dir/wheels" \
    "onnxruntime==$(python3 -c 'import onnxruntime; print(onnxruntime.__version__)')" \
    numpy opencv-python-headless
for whl in "$dir"/wheels/*.whl; do python3 -m zipfile -e "$whl" "$dir/site"; done
echo "arm64 python: qemu-aarch64 -L $dir/root $dir/root/usr/bin/python3.11 (PYTHONPATH=$dir/site)"
