#!/usr/bin/env bash
# The one wheel beside a second torch release (sourced by scripts/test.sh after setup_env.sh built the wheel):
# a fresh venv holding torch $CYCLEISP_FAST_OTHER_TORCH (default 2.13.0, whose CPU build lies on this machine's
# disk; the development venv has 2.14.1), the same wheel file installed into it with its dependencies (pip must
# leave that torch alone), then the op tests there: every native CPU kernel against the plain-PyTorch reference,
# with the extension loaded from that venv (CYCLEISP_FAST_EXPECT_NATIVE makes a missing _C an error, not a skip).
other_torch="${CYCLEISP_FAST_OTHER_TORCH:-2.13.0}"
other_venv="$repo/build/venv-torch-$other_torch"

_other_torch_setup() {
  if [ ! -x "$other_venv/bin/python" ]; then "${PYTHON:-python3}" -m venv "$other_venv"; fi
  "$other_venv/bin/python" -m pip install "torch==$other_torch"
  "$other_venv/bin/python" -m pip uninstall -y cycleisp_fast
  # with its dependencies and the test extra, as a user would; torch must stay
  "$other_venv/bin/python" -m pip install "$CYCLEISP_FAST_WHEEL[test]"
  cd "$other_venv"  # not the repository: import the installed wheel, not the source tree
  "$other_venv/bin/python" - "$other_torch" << 'EOF'
import sys

import torch

import cycleisp_fast
from cycleisp_fast import _extension

want = sys.argv[1]
assert torch.__version__.split("+")[0] == want, f"pip replaced torch {want} with {torch.__version__}"
assert _extension.LOADED, _extension.LOAD_ERROR
assert "site-packages" in cycleisp_fast.__file__, cycleisp_fast.__file__
print(f"cycleisp_fast {cycleisp_fast.__version__} (_C from {cycleisp_fast.__file__}) loads in torch {torch.__version__}")
EOF
}

_other_torch_tests() {
  cd "$repo"
  CYCLEISP_FAST_EXPECT_NATIVE=1 "$other_venv/bin/pytest" -q -p no:cacheprovider tests/ops
}

step other_torch "Install the same wheel beside torch $other_torch" _other_torch_setup
live_step other_torch_tests "Op tests in torch $other_torch (native CPU kernels vs the reference)" _other_torch_tests
