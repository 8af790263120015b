/** The extension's commands: Preview, Reload, Restart daemon, Show output. */
import * as vscode from 'vscode';
import type { Daemon } from './daemon';
import { openPreview, reload, targetOf } from './preview';
import { OPEN_PREVIEW, RELOAD_LOADER, RESTART, SHOW_OUTPUT } from './protocol';

export function registerCommands(daemon: Daemon): vscode.Disposable[] {
  const withClient = (run: (target: string) => Thenable<unknown>) => async (arg?: unknown) => {
    const target = targetOf(arg);
    if (!target) {
      void vscode.window.showWarningMessage('vmd: open a *.vmd.py loader first.');
      return undefined;
    }
    try {
      return await run(target);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      daemon.output.appendLine(`Command failed: ${message}`);
      void vscode.window.showErrorMessage(`vmd: ${message}`);
      return undefined;
    }
  };
  return [
    vscode.commands.registerCommand(OPEN_PREVIEW, withClient(async (target) => {
      const client = await daemon.start();
      return client && openPreview(client, target);
    })),
    vscode.commands.registerCommand(RELOAD_LOADER, withClient(async (target) => {
      const client = await daemon.start();
      return client && reload(client, target);
    })),
    vscode.commands.registerCommand(RESTART, () => daemon.restart()),
    vscode.commands.registerCommand(SHOW_OUTPUT, () => daemon.output.show()),
  ];
}
