/**
 * The `a2a-runner` command line: commands, flags, environment variables and defaults, in one
 * place. `--help` and the tables in docs/runner.md are generated from it (core's `CliSpec`).
 *
 * Not settings of the runner, so not here: the variables it SETS for the agents it starts
 * (`A2A_BROKER_URL`, `A2A_TOKEN`, `A2A_SPAWN_ID`, `A2A_PEER_NAME`, `A2A_TEAMS`, `A2A_TASK_ID`,
 * `A2A_CHANNELS`: Preset.ts, ClaudeSession.ts), and `PATH` (where commands and `claude` are found).
 */
import { ServerLimits } from "@mks/a2a"
import { CliSpec, McpNodeFlags } from "@mks/a2a/internal"

export const spec: CliSpec.Spec = {
  bin: "a2a-runner",
  summary: "the a2a runner: agent sessions on this machine (spawn orders, local API, logs)",
  commands: [
    {
      usage:
        "[--port N] [--host H] [--api-key K] [--data-dir DIR] [--broker URL] [--token T] [--id ID] [--labels k=v,…] [--capacity N] [--proxy URL --proxy-key K] [--claude-bin PATH] [--mcp-command \"…\"] [--policy FILE]",
      what: "serve the local API (and the broker link with `--broker`); one line with the address on stdout, logs on stderr"
    },
    {
      usage: "launch claude [--provider P] [--model M] [--name N] [--team T]… [--channels] [--broker URL] [--token T] [--proxy URL --proxy-key K] [-- extra claude args]",
      what: "one Claude Code session in this terminal, seeded and wired like the `claude` preset; everything after `--` goes to `claude`; the exit code is Claude Code's"
    }
  ],
  settings: [
    { flag: "port", arg: "N", env: "A2A_RUNNER_PORT", default: "`8487`", what: "local API port (`0`: any free port, printed on stdout)" },
    { flag: "host", arg: "H", env: "A2A_RUNNER_HOST", default: "`127.0.0.1`", what: "bind address" },
    {
      flag: "api-key",
      arg: "K",
      env: "A2A_RUNNER_API_KEY",
      default: "`<data-dir>/runner.key`",
      what: "Bearer key of the local API (at least 8 characters). Without one, a random key is created in `<data-dir>/runner.key` (0600) on first start"
    },
    {
      flag: "data-dir",
      arg: "DIR",
      env: "A2A_RUNNER_DATA_DIR",
      default: "`$A2A_HOME/runner` (`~/.a2a/runner`)",
      what: "definitions, logs, spawn records, Claude config dirs"
    },
    { flag: "broker", arg: "URL", env: "A2A_BROKER_URL", default: "none: the runner works alone", what: "the broker to link to (`launch claude`: the broker the session joins)" },
    {
      flag: "token",
      arg: "T",
      env: "A2A_TOKEN",
      default: "`$A2A_HOME/broker.token`",
      what: "a token with the `runner` role (admin works too); `launch claude`: the token of the session's MCP server"
    },
    { flag: "id", arg: "ID", env: "A2A_RUNNER_ID", default: "host name", what: "runner id on the broker" },
    {
      flag: "labels",
      arg: "k=v",
      multiple: true,
      env: "A2A_RUNNER_LABELS",
      default: "none",
      what: "labels spawn orders match on (comma- or space-separated; the flag may be repeated)"
    },
    { flag: "capacity", arg: "N", env: "A2A_RUNNER_CAPACITY", default: "`8`", what: "spawn orders it runs at once (0–10,000)" },
    { flag: "proxy", arg: "URL", env: "A2A_PROXY_URL", default: "none", what: "the a2a proxy for the `claude` preset and `launch claude` (needs `--proxy-key`)" },
    { flag: "proxy-key", arg: "K", env: "A2A_PROXY_KEY", default: "none", what: "the virtual key (`sk-mks-…`) sessions use" },
    { flag: "claude-bin", arg: "PATH", env: "A2A_CLAUDE_BIN", default: "`claude` on `PATH`", what: "the Claude Code executable" },
    {
      flag: "mcp-command",
      arg: "\"…\"",
      env: "A2A_MCP_COMMAND",
      default:
        `the installed \`@mks/a2a-mcp\` (\`node ${McpNodeFlags.NODE_FLAGS.join(" ")} …/dist/cli.js\`: a small young generation and the interpreter only, ~20 MiB less idle RSS per session), else \`npx -y @mks/a2a-mcp\``,
      what: "argv of the a2a MCP server (split on spaces and commas)"
    },
    {
      flag: "policy",
      arg: "FILE",
      env: "A2A_RUNNER_POLICY",
      default: "none: it runs what the broker sends",
      what: "what spawn orders may run here ([Policy](#policy)); a file that does not decode stops the runner at start"
    },
    {
      flag: "provider",
      arg: "P",
      what: "`launch claude`: the provider; the session's model is `P/M` (the proxy routes on it), `P/claude-sonnet-5-5` without `--model`"
    },
    { flag: "model", arg: "M", what: "`launch claude`: the model" },
    { flag: "name", arg: "N", default: "`<user>-<basename of cwd>`", what: "`launch claude`: the session's peer name" },
    { flag: "team", arg: "T", multiple: true, what: "`launch claude`: teams the session joins (repeat for several)" },
    {
      flag: "channels",
      what: "`launch claude`: load the a2a server as a development channel (you answer Claude Code's confirmation yourself)"
    },
    {
      env: "A2A_HOME",
      default: "`~/.a2a`",
      what: "the a2a home: the default data dir (`<home>/runner`) and the local broker's admin token (`<home>/broker.token`)"
    },
    {
      env: "CLAUDE_CONFIG_DIR",
      default: "`~/.claude`",
      what: "your Claude Code config: its `skills`, `agents`, `plugins` and `commands` are linked into each session's config dir"
    },
    ...CliSpec.connectionLimits("A2A_RUNNER", ServerLimits.defaults)
  ]
}
