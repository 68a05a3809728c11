/**
 * The `a2a-mcp` command line: its commands, flags, environment variables and defaults, in one
 * place. `--help` (Commands.ts) and the tables in docs/mcp.md are generated from it (core's
 * `CliSpec`). Plain data with a type-only import: nothing here loads effect or core.
 *
 * The variables are read where they are used (McpConfig.ts, core's `BrokerClient.readConfig`
 * and `StackRecord`, Backend.ts for `A2A_LOG_LEVEL`, Commands.ts for `--print-config`); this
 * spec states them and their defaults for users. `A2A_MCP_HOLD_EFFECT` (cli.ts) is a test hook,
 * not a setting, and is left out.
 */
import type { CliSpec } from "@mks/a2a/internal"

export const spec: CliSpec.Spec = {
  bin: "a2a-mcp",
  summary: "MCP stdio server that puts this agent session on the a2a bus",
  commands: [
    { usage: "", what: "serve MCP on stdin/stdout (started by the agent from its MCP configuration); stdout carries only JSON-RPC, logs go to stderr" },
    {
      usage: "--print-config [claude|codex|json] [--channels]",
      what:
        "print the MCP configuration that starts this server: a `.mcp.json` snippet for Claude Code (`claude`, the default; `json` is the same) or a `~/.codex/config.toml` snippet (`codex`)"
    }
  ],
  settings: [
    {
      flag: "print-config",
      what:
        "print a configuration snippet (kind as above) whose command runs the copy you ran (this Node and this build, or `npx -y @mks/a2a-mcp` when npx fetched it from a registry), with `A2A_BROKER_URL` (default: as below) and, when set, `A2A_TOKEN`, `A2A_PEER_NAME` and `A2A_TEAMS`"
    },
    { flag: "channels", what: "`--print-config`: add `A2A_CHANNELS=1`, for sessions started with `--dangerously-load-development-channels server:a2a`" },
    {
      env: "A2A_BROKER_URL",
      default: "the local stack's broker (`$A2A_HOME/stack.json`, written by `a2a up`), else `http://127.0.0.1:4200`",
      what: "broker base URL"
    },
    {
      env: "A2A_TOKEN",
      default: "the contents of `$A2A_HOME/broker.token`",
      what: "bearer token (create one with `a2a-broker token create --tenant T --role peer`); a local broker writes the token file on first start"
    },
    { env: "A2A_HOME", default: "`~/.a2a`", what: "where the token file (`broker.token`) and the local stack's record (`stack.json`) are read" },
    {
      env: "A2A_PEER_NAME",
      default: "derived from the git repository's (or directory's) name",
      what: "register (or resume) exactly this peer name; unset, the session takes the first of `name`, `name-2`, `name-3`, … that no online peer holds"
    },
    { env: "A2A_TEAMS", default: "none", what: "comma-separated teams to join on registration" },
    { env: "A2A_SPAWN_ID", what: "set by a runner for a session it spawned; registering with it moves the spawn to `registered`" },
    {
      env: "A2A_TASK_ID",
      what:
        "set by a runner for a session spawned for a task ([tasks.md](tasks.md#spawning-for-a-task)): the broker claims the task for this peer at registration, and the server keeps its lease alive"
    },
    { env: "A2A_AGENT", default: "the MCP client's name, e.g. `claude-code`", what: "agent kind shown to peers" },
    { env: "A2A_SUMMARY", default: "none", what: "the first summary shown to peers (at most 2,000 characters are kept)" },
    {
      env: "A2A_CHANNELS",
      default: "`0`",
      what:
        "`1`: the client shows channel notifications although it does not declare `claude/channel`; set it when you start Claude Code with `--dangerously-load-development-channels server:a2a`"
    },
    { env: "A2A_PUSH", default: "`1`", what: "`0` never pushes, even to a client that declares `claude/channel`" },
    {
      env: "A2A_PUSH_SETTLE_MS",
      default: "`2000`",
      what:
        "how long after `initialized` pushes to Claude Code begin, 0–60,000 ms. Claude Code 2.1.330 registers its channel handler a while after the MCP handshake (~0.45 s seen on a loaded machine) and silently drops a notification that arrives sooner; what arrives meanwhile waits, unacked, and is pushed in order once this has passed. Other clients are pushed to at once"
    },
    { env: "A2A_UNREGISTER_ON_EXIT", default: "`0`: go offline, keep the peer and its inbox", what: "`1`: delete the peer and its inbox on exit" },
    {
      env: "A2A_AGENT_PID",
      default: "the parent process (`npm exec`/`npx` and shell wrappers skipped on Linux)",
      what: "the agent's pid, when the parent-process guess is wrong"
    },
    {
      env: "A2A_TASK_LEASE_MS",
      default: "`60000`",
      what: "lease of the tasks this session claims, 300–3,600,000 ms; the server renews it every third of it while the session lives"
    },
    { env: "A2A_LOG_LEVEL", default: "`info`", what: "`debug`: more log lines on stderr" }
  ]
}
