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
}

/** Read `vmd.*` settings for `folder`, resolving the interpreter. */
export function getSettings(folder: vscode.WorkspaceFolder | undefined): Settings {
  const config = vscode.workspace.getConfiguration('vmd', folder?.uri);
  const include = config.get<string[]>('include', [...DEFAULT_INCLUDE]);
  const timeoutMs = config.get<number>('timeoutMs', 30000);
  return {
    python: resolvePython(config.get<string>('python', ''), folder?.uri.fsPath),
    include: Array.isArray(include) && include.length > 0 ? include : [...DEFAULT_INCLUDE],
    timeoutMs: typeof timeoutMs === 'number' && timeoutMs > 0 ? timeoutMs : 30000,
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

/** `initializationOptions` for the daemon. */
export function initializationOptions(settings: Settings): Record<string, unknown> {
  return { mode: 'serve', include: settings.include, timeoutMs: settings.timeoutMs };
}
