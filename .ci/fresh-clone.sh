#!/usr/bin/env bash
# CI acceptance: a stranger's first minutes. A fresh clone of this commit, an empty HOME, no
# build output; exactly the README's set-up command (`npm install && npm start`), then the
# getting-started commands as written (docs/getting-started.md, "Look around"). The stack
# listens on free ports (the machine may run another): the commands find it through the
# record `a2a up` writes, as they would on the default ports.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d /tmp/a2a-fresh-XXXXXX)"
stack_pid=""
cleanup() {
  if [ -n "$stack_pid" ] && kill -0 "$stack_pid" 2>/dev/null; then kill -TERM "$stack_pid"; wait "$stack_pid" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
# This machine's npm cache and Node headers (for native builds) are caches, not user state.
cache="$(npm config get cache)"
nodedir="$(npm config get nodedir)"
git clone --quiet --no-hardlinks "$repo" "$work/a2a"
mkdir -p "$work/home"
cd "$work/a2a"
export HOME="$work/home" npm_config_cache="$cache" npm_config_update_notifier=false
if [ -n "$nodedir" ] && [ "$nodedir" != "undefined" ]; then export npm_config_nodedir="$nodedir"; fi
export A2A_BROKER_PORT=0 A2A_RUNNER_PORT=0
started=$(date +%s)

# The README's set-up command, verbatim.
setup="$(grep -m1 -o '^npm install && npm start' "$repo/README.md")"
[ "$setup" = "npm install && npm start" ] || { echo "fresh-clone: the README's set-up command changed; update this check" >&2; exit 1; }
(npm install --no-audit --no-fund --loglevel=error && exec npm start) >"$work/stack.log" 2>&1 &
stack_pid=$!
for _ in $(seq 1 900); do
  grep -q '^Ctrl-C stops everything\.$' "$work/stack.log" && break
  kill -0 "$stack_pid" 2>/dev/null || { cat "$work/stack.log" >&2; echo "fresh-clone: npm start exited" >&2; exit 1; }
  sleep 1
done
grep -q '^Ctrl-C stops everything\.$' "$work/stack.log" || { cat "$work/stack.log" >&2; echo "fresh-clone: no stack after 15 min" >&2; exit 1; }
echo "fresh-clone: npm install && npm start ready after $(( $(date +%s) - started )) s"

# "Look around", as written (a peer to message: this shell's own CLI peer, registered by send).
npx a2a peers
me="cli-$(id -un)"
npx a2a send "$me" "hello"
npx a2a tail --count 1 --no-ack | grep -q "hello" || { echo "fresh-clone: tail did not show the message" >&2; exit 1; }
npx a2a peers --all | grep -q "$me"
npx a2a-broker token create --tenant default --role peer >/dev/null
npx a2a-mcp --print-config claude | node -e 'const c = JSON.parse(require("fs").readFileSync(0, "utf8")).mcpServers.a2a; if (c.command === "npx") process.exit(1)'

kill -TERM "$stack_pid"
wait "$stack_pid" || true
stack_pid=""
tail -n 1 "$work/stack.log" | grep -q '^a2a stack stopped$' || { tail -n 5 "$work/stack.log" >&2; echo "fresh-clone: no stopped line" >&2; exit 1; }
echo "fresh-clone: ok after $(( $(date +%s) - started )) s"
