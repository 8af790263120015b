/** Entry point: activate/deactivate only. */
import * as vscode from 'vscode';
import { registerCommands } from './commands';
import { Daemon } from './daemon';

let daemon: Daemon | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<Daemon> {
  const output = vscode.window.createOutputChannel('vmd', { log: true });
  daemon = new Daemon(output);
  context.subscriptions.push(
    output,
    daemon,
    ...registerCommands(daemon),
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (event.affectsConfiguration('vmd')) void daemon?.restart();
    }),
  );
  await daemon.start();
  return daemon;
}

export async function deactivate(): Promise<void> {
  await daemon?.stop();
  daemon = undefined;
}
