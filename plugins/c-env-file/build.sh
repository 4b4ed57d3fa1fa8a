#!/usr/bin/env bash
# Build the C source into a component: C bindings from the WIT with
# wit-bindgen, compile with zig's clang for wasm32-wasi (reactor), then
# wrap the core module as a component with wasm-tools. Needs:
#   pip install ziglang;  cargo install --locked wasm-tools@1.263.0 wit-bindgen-cli@0.63.0
# Usage: plugins/c-env-file/build.sh OUT_DIR   -> OUT_DIR/env_file.wasm
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build.sh OUT_DIR}
mkdir -p "$out/gen"
wit-bindgen c "$here/../../wit" --world source-plugin --out-dir "$out/gen" >/dev/null
python3 -m ziglang cc --target=wasm32-wasi -mexec-model=reactor -Os -Wall -Werror \
  -I "$out/gen" -o "$out/env_file.core.wasm" \
  "$here/env_file.c" "$out/gen/source_plugin.c" "$out/gen/source_plugin_component_type.o"
wasm-tools component new "$out/env_file.core.wasm" -o "$out/env_file.wasm"
wasm-tools validate "$out/env_file.wasm"
echo "$out/env_file.wasm"
