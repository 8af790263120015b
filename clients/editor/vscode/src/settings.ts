/** The extension's settings and what they mean for starting the daemon. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';

export interface Settings {
  /** The interpreter to run `-m vmd serve` with. */
  python: string;
  include: string[];
  timeoutMs: number;
}

/** Read `vmd.*` settings for `folder`, resolving the interpreter. */
export function getSettings(folder: vscode.WorkspaceFolder | undefined): Settings {
  const config = vscode.workspace.getConfiguration('vmd', folder?.uri);
  const include = config.get<string[]>('include', ['**/*.vmd.py']);
  const timeoutMs = config.get<number>('timeoutMs', 30000);
  return {
    python: resolvePython(config.get<string>('python', ''), folder?.uri.fsPath),
    include: Array.isArray(include) && include.length > 0 ? include : ['**/*.vmd.py'],
    timeoutMs: typeof timeoutMs === 'number' && timeoutMs > 0 ? timeoutMs : 30000,
  };
}

/**
 * The interpreter: the setting (`${workspaceFolder}` and `~` expanded), else the folder's
 * `.venv`, else `python3` (`python` on Windows) from PATH.
 */
export function resolvePython(setting: string, folder: string | undefined): string {
  let value = setting.trim();
  if (value) {
    if (folder) value = value.replace(/\$\{workspaceFolder\}/g, folder);
    if (value === '~' || value.startsWith('~/')) value = path.join(process.env.HOME ?? '', value.slice(1));
    return value;
  }
  if (folder) {
    const venv = process.platform === 'win32'
      ? path.join(folder, '.venv', 'Scripts', 'python.exe')
      : path.join(folder, '.venv', 'bin', 'python');
    if (fs.existsSync(venv)) return venv;
  }
  return process.platform === 'win32' ? 'python' : 'python3';
}

/** `initializationOptions` for the daemon. */
export function initializationOptions(settings: Settings): Record<string, unknown> {
  return { mode: 'serve', include: settings.include, timeoutMs: settings.timeoutMs };
}
