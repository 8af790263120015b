// Throwaway Vite projects with loaders, and the waiting helpers every test uses.
import { execFileSync } from 'node:child_process'
import * as fsModule from 'node:fs'
import { mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { version } from 'vite'

export const packageRoot = fileURLToPath(new URL('../..', import.meta.url))
export const distUrl = pathToFileURL(join(packageRoot, 'dist/index.js')).href
/** The `vite` CLI of the major under test (the vite7 project aliases `vite` to `vite7`). */
export const viteBin = join(packageRoot, 'node_modules', version.startsWith('7.') ? 'vite7' : 'vite', 'bin/vite.js')

export interface Project {
  root: string
  path(rel: string): string
  write(rel: string, text: string): void
  read(rel: string): string
  remove(): void
}

/** A fresh project in a temp dir (real path, so ids match what the daemon reports). */
export function makeProject(files: Record<string, string>): Project {
  const root = realpathSync(mkdtempSync(join(tmpdir(), 'vmd-vite-')))
  const project: Project = {
    root,
    path: (rel) => join(root, rel),
    write(rel, text) {
      const file = join(root, rel)
      mkdirSync(dirname(file), { recursive: true })
      writeFileSync(file, text)
    },
    read: (rel) => readFileSync(join(root, rel), 'utf8'),
    remove: () => rmSync(root, { recursive: true, force: true }),
  }
  for (const [rel, text] of Object.entries(files)) project.write(rel, text)
  return project
}

/** Poll `check` until it returns a truthy value (or stops throwing). */
export async function waitFor<T>(check: () => T | Promise<T>, what: string, timeoutMs = 15_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const value = await check()
      if (value) return value as NonNullable<T>
    } catch (error) {
      last = error
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

/** Whether a process is alive (and not a zombie). */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return !/^\d+ \(.*\) Z/.test(stat)
  } catch {
    return false
  }
}

/** Every process whose command line mentions `text` (from /proc). */
export function processesMentioning(text: string): number[] {
  const out = execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' })
  return out
    .split('\n')
    .filter((line) => line.includes(text))
    .map((line) => Number(line.trim().split(/\s+/)[0]))
}

/** A users loader watching data/*.csv, importing a local helper; the shape of the example. */
export const usersProject: Record<string, string> = {
  'src/users.vmd.py': [
    'import csv',
    'import vmd',
    'from helper import label',
    '',
    'watch = ["../data/*.csv"]',
    '',
    'def load(ctx):',
    '    rows = []',
    '    for name in ctx.watched_files:',
    '        with open(ctx.path.parent / name, newline="") as f:',
    '            rows.extend(csv.DictReader(f))',
    '    role = ctx.query.get("role")',
    '    if role:',
    '        rows = [r for r in rows if r["role"] == role]',
    '    return vmd.json_module({"label": label(), "mode": ctx.mode, "names": [r["name"] for r in rows]})',
    '',
  ].join('\n'),
  'src/helper.py': 'def label():\n    return "v1"\n',
  'data/a.csv': 'name,role\nada,admin\nalan,editor\n',
  'package.json': '{"type": "module"}\n',
  'src/main.js': [
    "import users from './users.vmd.py'",
    "import admins from './users.vmd.py?role=admin'",
    'export { users, admins }',
    '',
  ].join('\n'),
}

/** Every live descendant of `pid` (walking /proc parent links). */
export function descendants(pid: number): number[] {
  const { readdirSync } = fsModule
  const parents = new Map<number, number>()
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      parents.set(Number(name), ppid)
    } catch {
      // gone meanwhile
    }
  }
  const out: number[] = []
  const queue = [pid]
  while (queue.length) {
    const parent = queue.shift()!
    for (const [child, ppid] of parents) {
      if (ppid === parent) {
        out.push(child)
        queue.push(child)
      }
    }
  }
  return out
}

/** The vmd daemons running with `root` as their working directory. */
export function daemonsIn(root: string): number[] {
  const { readdirSync, readlinkSync } = fsModule
  const out: number[] = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const cmd = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0')
      if (cmd.includes('vmd') && cmd.includes('serve') && readlinkSync(`/proc/${name}/cwd`) === root && alive(Number(name))) {
        out.push(Number(name))
      }
    } catch {
      // gone meanwhile
    }
  }
  return out
}


/**
 * Rewrite `file` with `text` of the same length through a shared memory map (done by Python):
 * its mtime changes but inotify reports nothing, so neither Vite's watcher nor the daemon's
 * sees it. What follows is then the doing of whatever the test reports by hand.
 */
export function writeUnseen(file: string, text: string): void {
  const script = [
    'import mmap, os, sys, time',
    'path, data = sys.argv[1], sys.argv[2].encode()',
    'before = os.stat(path).st_mtime_ns',
    'for _ in range(100):',
    '    with open(path, "r+b") as f, mmap.mmap(f.fileno(), 0) as m:',
    '        assert len(m) == len(data), "same length only"',
    '        m[:] = data',
    '    if os.stat(path).st_mtime_ns != before: break',
    '    time.sleep(0.005)',
    'else: sys.exit("mtime did not change")',
  ].join('\n')
  execFileSync(process.env.VMD_PYTHON ?? 'python3', ['-c', script, file, text])
}

/** A loader that maps its output back to the CSV it came from (a source map with the content). */
export const mappedProject: Record<string, string> = {
  'package.json': '{"type": "module"}\n',
  'src/rows.vmd.py': [
    'def load(ctx):',
    '    code = "export const rows = [1, 2];\\nexport default rows;\\n"',
    '    source_map = {"version": 3, "sources": ["table.csv"], "sourcesContent": ["n\\n1\\n2\\n"], "names": [], "mappings": "AAAA;AACA"}',
    '    return {"code": code, "map": source_map}',
    '',
  ].join('\n'),
  'src/main.js': "import rows from './rows.vmd.py'\nexport { rows }\n",
}
