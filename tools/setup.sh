#!/usr/bin/env bash
# Creates .venv and installs the project with every dependency. Idempotent: a second run only
# re-checks that everything imports, which takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.setup-complete

# torch and torchvision must come as a pair built for each other: a CPU-only torch wheel found on
# some machines' pip find-links (2.13.0+cpu) would satisfy a loose "torch" requirement but break
# torchvision's compiled operators ("operator torchvision::nms does not exist"). Pinning both
# minor versions makes pip pick the matching registry builds (they also run on CPU).
TORCH_PAIR=("torch==2.14.*" "torchvision==0.29.*")

# The project's packages are imported from outside the checkout, so that a package added since the editable
# install (which maps the top-level packages it saw) triggers a reinstall.
if [ -f "$STAMP" ] && (cd / && "$ROOT/$VENV/bin/python" -c "import torch, torchvision, davisinteractive, starlette, uvicorn, playwright, imageio_ffmpeg, common, vos, bmvos, emvos, hmmn, tbd, gis") 2>/dev/null; then
  echo "setup: .venv is up to date ($("$VENV/bin/python" -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__)'))"
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
# pip_install ARGS...: quiet pip, minus the per-package notices some machines' extra index URLs print.
pip_install() {
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$@" 2>&1 | { grep -v '^WARNING: Location' || true; }
  return "${PIPESTATUS[0]}"
}

pip_install "${TORCH_PAIR[@]}"
# Runtime dependencies, davisinteractive's real dependencies (its sdist pins scikit-learn==0.20.3,
# which cannot be built on current Pythons), and its build needs (Cython, a setuptools that still
# ships pkg_resources).
pip_install numpy opencv-python pillow gdown tqdm scikit-image scipy pytest \
  networkx pandas scikit-learn absl-py requests six matplotlib starlette uvicorn httpx2 playwright imageio-ffmpeg \
  cython "setuptools<81" wheel
pip_install --no-deps --no-build-isolation "davisinteractive==1.0.4"
pip_install --no-deps --no-build-isolation -e .

# Import check, from outside the checkout as a user's script would: the torch pair, davisinteractive (through
# the project's compatibility shim) and every project package.
(cd / && "$ROOT/$VENV/bin/python" -) <<'PY'
import torch, torchvision
torchvision.ops.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)  # compiled ops load
import common, vos, bmvos, emvos, hmmn, tbd, gis  # noqa: F401
print("setup: torch", torch.__version__, "torchvision", torchvision.__version__, "OK")
PY
touch "$STAMP"
