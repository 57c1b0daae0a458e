// A throwaway PostgreSQL cluster on 127.0.0.1 for the end-to-end tests (not a test file
// itself): initdb in a temporary directory, password authentication over TCP (scram-sha-256)
// as a real fleet store has, removed by `stop()`. initdb refuses root, so as root (CI) the
// cluster belongs to the `postgres` user Debian's package creates.

import { execFileSync } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** The newest installed PostgreSQL's programs, or null. */
export function installedPostgres() {
  const root = "/usr/lib/postgresql";
  if (!existsSync(root)) return null;
  const versions = readdirSync(root)
    .filter((v) => /^\d+$/.test(v) && existsSync(join(root, v, "bin", "initdb")))
    .map(Number)
    .sort((a, b) => a - b);
  return versions.length ? join(root, String(versions.at(-1)), "bin") : null;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Starts a cluster whose superuser `postgres` has `password`; answers its port and helpers. */
export async function startPostgres(password) {
  const bin = installedPostgres();
  if (!bin) throw new Error("PostgreSQL is not installed (scripts/deps.sh installs it)");
  const dir = mkdtempSync(join(tmpdir(), "lifeline-e2e-pg-"));
  const root = process.getuid?.() === 0;
  const pw = join(dir, "pw");
  writeFileSync(pw, password);
  const uid = root ? Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" })) : null;
  const gid = root ? Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" })) : null;
  if (root) {
    chownSync(dir, uid, gid);
    chownSync(pw, uid, gid);
  }
  const run = (program, args) =>
    root
      ? execFileSync("runuser", ["-u", "postgres", "--", join(bin, program), ...args], { encoding: "utf8" })
      : execFileSync(join(bin, program), args, { encoding: "utf8" });
  const data = join(dir, "data");
  run("initdb", ["-D", data, "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync", `--pwfile=${pw}`]);
  const port = await freePort();
  run("pg_ctl", ["-D", data, "-l", join(dir, "log"), "-o", `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`, "-w", "start"]);
  return {
    port,
    /** Runs SQL as the superuser over the local socket. */
    psql: (database, sql) => run("psql", ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-h", dir, "-p", String(port), "-d", database, "-c", sql]).trim(),
    url: (database) => `postgres://postgres@127.0.0.1:${port}/${database}`,
    stop() {
      try {
        run("pg_ctl", ["-D", data, "-m", "immediate", "-w", "stop"]);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
