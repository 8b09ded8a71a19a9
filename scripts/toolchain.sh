# Sourced by the other scripts: puts Node 24 and pnpm on PATH, installing them
# into .toolchain/ from the npm registry when the machine lacks them.
# Only Node >= 20 with npm is assumed to be present.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLCHAIN="$ROOT/.toolchain"
NODE_MAJOR=24
PNPM_VERSION=12.21.0

node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

if [ -x "$TOOLCHAIN/node_modules/.bin/node" ]; then
  export PATH="$TOOLCHAIN/node_modules/.bin:$PATH"
fi
if [ "$(node_major)" != "$NODE_MAJOR" ] || ! command -v pnpm >/dev/null 2>&1 || [ "$(pnpm --version 2>/dev/null)" != "$PNPM_VERSION" ]; then
  echo "toolchain: installing Node $NODE_MAJOR and pnpm $PNPM_VERSION into .toolchain/" >&2
  mkdir -p "$TOOLCHAIN"
  npm install --prefix "$TOOLCHAIN" --no-save --no-audit --no-fund --loglevel=error \
    "node@$NODE_MAJOR" "pnpm@$PNPM_VERSION" >&2
  export PATH="$TOOLCHAIN/node_modules/.bin:$PATH"
fi
[ "$(node_major)" = "$NODE_MAJOR" ] || { echo "toolchain: Node $NODE_MAJOR is not on PATH" >&2; exit 1; }
export PNPM_HOME="$TOOLCHAIN/pnpm-home"
