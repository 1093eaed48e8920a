#!/usr/bin/env bash
# Install everything mtcompare needs on Debian or Ubuntu, as root or with sudo:
# the SWORD Bible modules (the default corpus), python3-venv, and a virtual
# environment .venv with the CPU build of PyTorch and mtcompare itself.
#
#   ./install.sh            then   .venv/bin/mtcompare --help
#
# TORCH_INDEX_URL: a pip index to take torch from, for machines where plain
# 'pip install torch==2.13.0' would pick a CUDA build (e.g. PyTorch's CPU index).
set -euo pipefail
cd "$(dirname "$0")"

if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi

apt_packages="sword-text-sparv sword-text-web libsword-utils"
python3 -m venv --help >/dev/null 2>&1 || apt_packages="$apt_packages python3-venv"
python3 -m ensurepip --version >/dev/null 2>&1 || apt_packages="$apt_packages python3-venv"
missing=""
for package in $apt_packages; do
  dpkg -s "$package" >/dev/null 2>&1 || missing="$missing $package"
done
if [ -n "$missing" ]; then
  echo "installing Debian packages:$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
if [ -n "${TORCH_INDEX_URL:-}" ]; then
  .venv/bin/python -m pip install -q torch==2.13.0 --index-url "$TORCH_INDEX_URL"
else
  .venv/bin/python -m pip install -q torch==2.13.0
fi
.venv/bin/python -m pip install -q -e ".[test]"
echo "installed: $(.venv/bin/mtcompare --version)"
