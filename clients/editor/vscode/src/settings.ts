/** The extension's settings and what they mean for starting the daemon. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { DEFAULT_INCLUDE } from './protocol';

export interface Settings {
  /** The interpreter to run `-m vmd serve` with. */
  python: string;
  include: string[];
  timeoutMs: number;
  /** Each loader process's memory limit in MB, `0` for none; `undefined`: the daemon's default. */
  memoryLimitMb: number | undefined;
}

/** Read `vmd.*` settings for `folder`, resolving the interpreter. */
export function getSettings(folder: vscode.WorkspaceFolder | undefined): Settings {
  const config = vscode.workspace.getConfiguration('vmd', folder?.uri);
  const include = config.get<string[]>('include', [...DEFAULT_INCLUDE]);
  const timeoutMs = config.get<number>('timeoutMs', 30000);
  const memoryLimitMb = config.get<number | null>('memoryLimitMb', null);
  return {
    python: resolvePython(config.get<string>('python', ''), folder?.uri.fsPath),
    include: Array.isArray(include) && include.length > 0 ? include : [...DEFAULT_INCLUDE],
    timeoutMs: typeof timeoutMs === 'number' && timeoutMs > 0 ? timeoutMs : 30000,
    memoryLimitMb: typeof memoryLimitMb === 'number' && Number.isInteger(memoryLimitMb) && memoryLimitMb >= 0
      ? memoryLimitMb
      : undefined,
  };
}

/**
 * The interpreter, found as every vmd client finds it (clients/README.md): the setting
 * (`${workspaceFolder}` and `~` expanded), else the nearest `.venv` from the folder up, else
 * `python3` (`python` on Windows) from PATH. Unlike the other clients, `VMD_PYTHON` is not
 * read: the extension host has the environment VS Code was started with (a desktop launcher's,
 * or a terminal's), so it would apply or not depending on how VS Code was opened; a folder's
 * `vmd.python` setting does that job here.
 */
export function resolvePython(setting: string, folder: string | undefined): string {
  let value = setting.trim();
  if (value) {
    if (folder) value = value.replace(/\$\{workspaceFolder\}/g, folder);
    if (value === '~' || value.startsWith('~/')) value = path.join(process.env.HOME ?? '', value.slice(1));
    return value;
  }
  const win = process.platform === 'win32';
  for (let dir = folder; dir !== undefined;) {
    const venv = win ? path.join(dir, '.venv', 'Scripts', 'python.exe') : path.join(dir, '.venv', 'bin', 'python');
    if (fs.existsSync(venv)) return venv;
    const parent = path.dirname(dir);
    dir = parent === dir ? undefined : parent;
  }
  return win ? 'python' : 'python3';
}

/** `initializationOptions` for the daemon; `memoryLimitMb` only when set, else the daemon picks. */
export function initializationOptions(settings: Settings): Record<string, unknown> {
  const { include, timeoutMs, memoryLimitMb } = settings;
  return { mode: 'serve', include, timeoutMs, ...(memoryLimitMb === undefined ? {} : { memoryLimitMb }) };
}
