/**
 * The Node flags every launcher that starts the a2a MCP server with `node` passes (its own
 * `--print-config`, the runner's default MCP command, `a2a up`). V8 sizes the heap and picks
 * its compilers when the process starts, so the bin cannot set these itself
 * (`v8.setFlagsFromString` after start was measured to change nothing). `npx -y @mks/a2a-mcp`
 * runs without them.
 *
 * - `--max-semi-space-size=2`: a 2 MiB young generation. Node lets it grow to 16 MiB during
 *   start-up, and a session's MCP server never needs that throughput: idle RSS 86 → ~73 MiB,
 *   with shorter scavenges.
 * - `--no-opt --no-sparkplug --no-maglev`: JavaScript runs in V8's interpreter only, without
 *   the optimizing and baseline compilers' code and the type feedback they keep. One server per
 *   session, each relaying a session's messages, never runs hot enough to repay them: idle RSS
 *   ~65 → ~59 MiB, start-up no slower, and at 200 msg/s through one server its hop adds
 *   ~0.3 ms more at p50 and stays far under the 10 ms p99 target (bench/mcp.mjs, docs/benchmarks.md).
 *   Unlike `--jitless` (or `--lite-mode`) they keep WebAssembly, which Node's `fetch` needs.
 *   (`--no-maglev` is a no-op where Maglev is off by default, as on Node 20.)
 */
export const NODE_FLAGS: ReadonlyArray<string> = ["--max-semi-space-size=2", "--no-opt", "--no-sparkplug", "--no-maglev"]
