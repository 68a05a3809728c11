/**
 * The `a2a` command line: commands, flags, environment variables and defaults, in one place.
 * `--help` and the tables in docs/cli.md are generated from it (core's `CliSpec`); cli.ts parses
 * every command but `up` with it, and Up.ts parses `up`'s flags (`UP_FLAGS`) with it.
 */
import type { CliSpec } from "@mks/a2a/internal"
import { KeyTables } from "@mks/a2a-proxy"

const BROKER = "Broker (--broker URL or A2A_BROKER_URL, default the running stack's, else http://127.0.0.1:4200; --token T or A2A_TOKEN, default ~/.a2a/broker.token)"
const PROXY =
  "Proxy (--proxy URL or A2A_PROXY_URL, default the running stack's, else http://127.0.0.1:3200; --admin-token T or A2A_PROXY_ADMIN_TOKEN, default ~/.a2a/proxy.token; an OIDC admin JWT works too; no broker needed)"
const STACK = "Local stack (what npm start runs)"

/** The flags `a2a up` takes (besides `--help`); no other command takes them. */
export const UP_FLAGS: ReadonlyArray<string> = ["home", "port", "runner-port", "proxy-port", "proxy-config", "no-runner", "check-config"]

export const spec: CliSpec.Spec = {
  bin: "a2a",
  summary: "the a2a command line",
  commands: [
    { group: BROKER, usage: "peers [--team T] [--host H] [--all]", what: "peers online (`--all` adds offline ones): name, id, status, agent, teams, host, last seen, summary" },
    { group: BROKER, usage: "teams", what: "the tenant's teams and their members" },
    { group: BROKER, usage: "runners", what: "runners with status, `active/capacity`, presets, labels" },
    { group: BROKER, usage: "spawns", what: "spawn orders with status, pid, exit code" },
    {
      group: BROKER,
      usage: "send <peer> <text|-> [--thread ID] [--reply-to ID]",
      what: "message a peer by name or id; `-` reads the text from stdin (several words are joined with spaces)"
    },
    { group: BROKER, usage: "send --team <team> <text|-> [--thread ID] [--reply-to ID]", what: "message a team" },
    {
      group: BROKER,
      usage: "tail [--quiet] [--no-ack] [--count N]",
      what: "follow this CLI's peer channel live: messages (acked once printed, unless `--no-ack`) and, unless `--quiet`, the tenant's events; `--count N` exits after N messages"
    },
    {
      group: BROKER,
      usage: "tail --logs <agent> [--n N]",
      what: "print a spawned agent's log: the last `N` lines (default 200, 0 … 10,000), then each new line until Ctrl-C, or until the agent ends for good (\"log ended: …\" on stderr, exit 0); `--json`: one `{\"line\",\"at\"}` object per line"
    },
    {
      group: BROKER,
      usage: "attach <agent>",
      what: "attach this terminal to the agent's: its output here, keystrokes there; Ctrl-] detaches (exit 0); when the agent's process ends, `a2a` exits with its exit code"
    },
    {
      group: BROKER,
      usage:
        "spawn [--runner R] [--label k=v]... [--preset claude|command] [--name N] [--team T]... [--prompt P] [--provider P] [--model M] [--cwd D] [--env K=V]... [--task ID] [--wait running|registered|none] [--timeout S] [-- command args...]",
      what: "a spawn order (preset `claude`, or `command` with the command after `--`); `--task ID`: for a task of the board, which the spawned agent holds once it registers ([tasks.md](tasks.md#spawning-for-a-task); refused with `TaskNotFound` / `TaskConflict` when the task is unknown or not claimable); waits until the spawn is `running` (default), `registered` (`--wait registered`, for agents that join the bus) or returns at once (`--wait none`); `--timeout S` (default 60)"
    },
    { group: BROKER, usage: "stop <peer|spawn-id>", what: "stop a spawned agent by spawn id (`s_…`), peer id or peer name" },
    {
      group: BROKER,
      usage: "audit [--after SEQ] [--limit N]",
      what: "the tenant's audit log, oldest first: who spawned, stopped, attached what, when, where, with what result (permission `audit`: admins, or a token with that scope)"
    },
    {
      group: BROKER,
      usage: "agents add <name> <card-url> [--credential-env VAR | --credential -]",
      what: "bridge a remote A2A agent onto the bus as peer `<name>`; the credential comes from the environment or stdin and is never printed ([a2a.md](a2a.md))"
    },
    { group: BROKER, usage: "agents list", what: "the bridged A2A agents" },
    { group: BROKER, usage: "agents remove <name>", what: "remove a bridged A2A agent" },
    {
      group: BROKER,
      usage: "tasks [list] [--team T] [--state S] [--label L]... [--limit N]",
      what: "a team's task board ([tasks.md](tasks.md)), oldest first: id, state, priority, team, title, assignee, attempts, labels"
    },
    {
      group: BROKER,
      usage: "tasks create --team T <title|-> [--body B] [--priority N] [--label L]... [--depends-on ID]... [--max-attempts N]",
      what: "put a task on the board (created by the token's principal, which may cancel it)"
    },
    {
      group: BROKER,
      usage: "tasks claim --team T [--label L]... [--lease S]",
      what: "claim the next task as the CLI's peer (`--as`), which joins the team first; prints the task and its body; exit 1 when nothing is claimable"
    },
    {
      group: BROKER,
      usage: "tasks complete <id> [--result R|-]",
      what: "finish a task the CLI's peer holds (`TaskConflict: …` when it does not, or its lease lapsed); `--result -` reads the result from stdin"
    },
    { group: BROKER, usage: "tasks fail <id> [--reason R]", what: "give up a task the CLI's peer holds (it goes back to the board while attempts remain)" },
    { group: BROKER, usage: "tasks cancel <id> [--reason R]", what: "cancel a task you created" },
    {
      group: PROXY,
      usage: "keys create --name N [--tenant T] [--tier tier1|tier2] [--models 'glob,glob'] [--rpm N] [--requests-per-5h N] [--tokens-per-5h N] [--expires ISO-8601]",
      what: "a virtual key on the proxy, printed once (the record goes to stderr, `--json` prints both)"
    },
    { group: PROXY, usage: "keys list", what: "keys masked (prefix only) with limits, state and last use" },
    { group: PROXY, usage: "keys revoke <key-id>", what: "revoke a key at once" },
    { group: PROXY, usage: "usage [--key K]", what: "the current 5-hour window per key: requests, input, output, cache write/read tokens, what remains" },
    {
      group: STACK,
      usage: "up [--home DIR] [--port N] [--runner-port N] [--proxy-port N] [--proxy-config FILE] [--no-runner]",
      what: "the local stack in one process: broker, runner and, when providers are configured, proxy; Ctrl-C stops all ([getting-started.md](getting-started.md))"
    },
    { group: STACK, usage: "up --check-config", what: "check the ports and the proxy config, start nothing" }
  ],
  settings: [
    // every command but `up`
    {
      flag: "broker",
      arg: "URL",
      env: "A2A_BROKER_URL",
      default: "the running stack's (`<home>/stack.json`), else `http://127.0.0.1:4200`",
      what: "the broker of the broker commands"
    },
    { flag: "token", arg: "T", env: "A2A_TOKEN", default: "the contents of `<home>/broker.token`", what: "the broker token of the broker commands" },
    {
      flag: "as",
      arg: "NAME",
      env: "A2A_PEER_NAME",
      default: "`cli-<user>`",
      what: "this CLI's own peer, registered or resumed by name (`send`, `tail`, `spawn`, `tasks claim\\|complete\\|fail`)"
    },
    { flag: "json", what: "JSON instead of tables (`tail`: one JSON object per line)" },
    {
      flag: "no-color",
      env: "NO_COLOR",
      default: "colours on a TTY",
      what: "no colours; there are none either when `NO_COLOR` is set (even empty) or `TERM` is `dumb`"
    },
    // broker commands
    { flag: "team", arg: "T", multiple: true, what: "`peers`, `tasks`: the team; `send`: message this team; `spawn`: the agent's teams (repeat for several)" },
    { flag: "host", arg: "H", what: "`peers`: only peers on this host" },
    { flag: "all", what: "`peers`: offline ones too" },
    { flag: "thread", arg: "ID", what: "`send`: the thread to post in" },
    { flag: "reply-to", arg: "ID", what: "`send`: the message this one answers" },
    { flag: "quiet", what: "`tail`: messages only, no events" },
    { flag: "no-ack", what: "`tail`: do not ack the messages printed (they stay in the inbox)" },
    { flag: "count", arg: "N", what: "`tail`: exit after N messages" },
    { flag: "logs", arg: "AGENT", what: "`tail`: follow this agent's log instead of messages" },
    { flag: "n", arg: "N", default: "`200`", what: "`tail --logs`: the log lines printed first (0 … 10,000)" },
    { flag: "after", arg: "SEQ", what: "`audit`: entries after this sequence number" },
    { flag: "limit", arg: "N", what: "`audit`, `tasks list`: at most N entries" },
    { flag: "runner", arg: "R", default: "the matching runner with most free capacity", what: "`spawn`: on this runner" },
    { flag: "label", arg: "L", multiple: true, what: "`spawn`: a runner label `k=v` the runner must have; `tasks`: a task label (repeat for several)" },
    { flag: "preset", arg: "P", default: "`claude`, or `command` with a command after `--`", what: "`spawn`: `claude` or `command`" },
    { flag: "name", arg: "N", what: "`spawn`: the agent's peer name; `keys create`: the key's name" },
    { flag: "prompt", arg: "P", what: "`spawn`: the agent's first prompt" },
    { flag: "provider", arg: "P", what: "`spawn`: the `claude` preset's provider (the proxy routes `provider/model`)" },
    { flag: "model", arg: "M", what: "`spawn`: the `claude` preset's model" },
    { flag: "cwd", arg: "D", what: "`spawn`: the agent's working directory on the runner" },
    { flag: "env", arg: "K=V", multiple: true, what: "`spawn`: an environment variable of the agent (repeat for several)" },
    { flag: "task", arg: "ID", what: "`spawn`: the task the agent is for ([tasks.md](tasks.md#spawning-for-a-task))" },
    { flag: "wait", arg: "W", default: "`running`", what: "`spawn`: wait until `running`, `registered`, or `none` (return at once)" },
    { flag: "timeout", arg: "S", default: "`60`", what: "`spawn`: seconds to wait" },
    { flag: "credential-env", arg: "VAR", what: "`agents add`: read the remote agent's credential from this environment variable" },
    { flag: "credential", arg: "-", what: "`agents add`: read the credential from stdin (only `-`)" },
    { flag: "state", arg: "S", what: "`tasks list`: `open`, `claimed`, `done`, `failed` or `cancelled`" },
    { flag: "body", arg: "B", what: "`tasks create`: the task's body" },
    { flag: "priority", arg: "N", default: "`0`", what: "`tasks create`: higher is claimed first" },
    { flag: "depends-on", arg: "ID", multiple: true, what: "`tasks create`: a task that must be done first (repeat for several)" },
    { flag: "max-attempts", arg: "N", default: "`3`", what: "`tasks create`: claims allowed before the task fails" },
    { flag: "lease", arg: "S", default: "`60`", what: "`tasks claim`: the lease in seconds" },
    { flag: "result", arg: "R", what: "`tasks complete`: the result (`-` reads stdin)" },
    { flag: "reason", arg: "R", what: "`tasks fail`, `tasks cancel`: why" },
    // proxy commands
    {
      flag: "proxy",
      arg: "URL",
      env: "A2A_PROXY_URL",
      default: "the running stack's (`<home>/stack.json`), else `http://127.0.0.1:3200` (the port `A2A_PROXY_PORT` when set)",
      what: "the proxy of `keys` and `usage`"
    },
    {
      flag: "admin-token",
      arg: "T",
      env: "A2A_PROXY_ADMIN_TOKEN",
      default: "the contents of `<home>/proxy.token`",
      what: "the proxy's admin token (or an OIDC admin JWT) for `keys` and `usage`"
    },
    ...KeyTables.CREATE_SETTINGS,
    { flag: "key", arg: "K", what: "`usage`: only this key" },
    // up
    {
      flag: "home",
      arg: "DIR",
      env: "A2A_HOME",
      default: "`~/.a2a`",
      what: "`up`: the data directory (database, tokens, runner, `stack.json`); the other commands read `A2A_HOME` (not the flag) to find the token files and the running stack"
    },
    { flag: "port", arg: "N", env: "A2A_BROKER_PORT", default: "`4200`", what: "`up`: the broker's port (`0` picks a free one)" },
    { flag: "runner-port", arg: "N", env: "A2A_RUNNER_PORT", default: "`8487`", what: "`up`: the runner's port" },
    {
      flag: "proxy-port",
      arg: "N",
      env: "A2A_PROXY_PORT",
      default: "the config's `port`, else `3200`",
      what: "`up`: the proxy's port; `keys` and `usage` read `A2A_PROXY_PORT` (not the flag) for the default proxy URL"
    },
    {
      flag: "proxy-config",
      arg: "FILE",
      env: "A2A_PROXY_CONFIG",
      default: "`<home>/proxy.yaml` when it exists",
      what: "`up`: the proxy's config; without one the proxy does not run ([proxy.md](proxy.md))"
    },
    { flag: "no-runner", what: "`up`: start no runner" },
    { flag: "check-config", what: "`up`: check the ports and the proxy config, start nothing" },
    { env: "A2A_RUNNER_ID", default: "the host name", what: "`up`: the runner's id" },
    { env: "A2A_CLAUDE_BIN", default: "`claude`", what: "`up`: the runner's `claude` preset runs this binary" },
    { env: "CLAUDE_CONFIG_DIR", default: "`~/.claude`", what: "`up`: the Claude Code settings the runner's `claude` preset shares with its agents" },
    { env: "A2A_LOG_LEVEL", default: "warnings", what: "`up`: `info` or `debug` logs more of the servers to stderr (logfmt)" }
  ],
  footer: [
    "<agent> is a spawn id (s_...) or the name or id of a peer started by a spawn order.",
    "Common: --as NAME (this CLI's peer), --json, --no-color, --help, --version."
  ]
}
