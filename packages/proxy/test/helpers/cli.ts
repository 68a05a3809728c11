/**
 * Runs the built CLI (`dist/cli.js`) as a child process; rebuilds the package first when a
 * source file is newer than the build, so the tests never exercise stale code.
 */
import { execFileSync, spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

export const packageDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..")
export const cliPath = path.join(packageDir, "dist", "cli.js")

const newest = (dir: string): number =>
  Math.max(...fs.readdirSync(dir, { withFileTypes: true }).map((e) => (e.isDirectory() ? newest(path.join(dir, e.name)) : fs.statSync(path.join(dir, e.name)).mtimeMs)))

export const ensureBuilt = (): void => {
  const built = fs.existsSync(cliPath) ? fs.statSync(cliPath).mtimeMs : 0
  if (built < newest(path.join(packageDir, "src"))) {
    execFileSync("npm", ["run", "build"], { cwd: packageDir, stdio: "ignore" })
  }
}

export interface Running {
  readonly child: ChildProcess
  readonly url: string
  readonly stderr: () => string
  /** Resolves with the exit code (or signal) when the process ends. */
  readonly exited: Promise<number | string>
}

/** Start `a2a-proxy` serving; resolves once it printed its address. */
export const serve = (args: ReadonlyArray<string>, env: Record<string, string>): Promise<Running> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliPath, ...args], { env: { PATH: process.env.PATH ?? "", ...env }, stdio: ["ignore", "pipe", "pipe"] })
    let out = ""
    let err = ""
    const exited = new Promise<number | string>((r) => child.once("exit", (code, signal) => r(code ?? signal ?? -1)))
    child.stderr!.on("data", (d: Buffer) => (err += d.toString()))
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString()
      const match = /a2a-proxy listening on (http:\/\/\S+)\n/.exec(out)
      if (match !== null) resolve({ child, url: match[1]!, stderr: () => err, exited })
    })
    void exited.then((code) => reject(new Error(`a2a-proxy exited (${code}) before listening: ${err}`)))
  })

/** Run a CLI command to completion. */
export const run = (args: ReadonlyArray<string>, env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> =>
  new Promise((resolve) => {
    const child = spawn(process.execPath, [cliPath, ...args], { env: { PATH: process.env.PATH ?? "", ...env }, stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()))
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()))
    child.once("exit", (code) => resolve({ code: code ?? -1, stdout, stderr }))
  })
