/** Starting, stopping and restarting `python -m vmd serve` as a language server. */
import { execFile } from 'node:child_process';
import * as vscode from 'vscode';
import {
  LanguageClient,
  type LanguageClientOptions,
  type ServerOptions,
  type DocumentSelector,
} from 'vscode-languageclient/node';
import { retargetLenses } from './preview';
import { INSTALL_HINT } from './protocol';
import { getSettings, initializationOptions, type Settings } from './settings';

/**
 * Why `python` cannot run the daemon, in words a user can act on; undefined when it can.
 * Runs `python -c "import vmd"`, so a missing interpreter and a missing package read apart.
 */
export function checkPython(python: string, cwd?: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    // vmd.cli, not vmd: the "vmd" on PyPI is an unrelated package.
    execFile(python, ['-c', 'import vmd.cli'], { cwd, timeout: 20000 }, (error, _stdout, stderr) => {
      if (!error) {
        resolve(undefined);
      } else if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
        resolve(`Python interpreter "${python}" was not found. Set "vmd.python" to a Python `
          + 'that has vmd installed.');
      } else {
        const why = String(stderr).trim().split('\n').pop() ?? String(error);
        resolve(`vmd is not installed for ${python} (${why}). ${installHint(python)} `
          + 'Or set "vmd.python" to another interpreter.');
      }
    });
  });
}

// The hint every client gives (protocol.ts), the checkout spelled as the editors spell it.
function installHint(python: string): string {
  return INSTALL_HINT.replaceAll('{python}', () => python).replaceAll('{checkout}', 'path/to/vmd');
}

/** One daemon for the workspace, restartable; `client` is undefined while it is not running. */
export class Daemon implements vscode.Disposable {
  client: LanguageClient | undefined;
  /** The last start failure shown to the user (for tests and the status). */
  lastError: string | undefined;
  private pending: Promise<LanguageClient | undefined> | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private restartWaiters: Array<(client: LanguageClient | undefined) => void> = [];

  constructor(
    readonly output: vscode.LogOutputChannel,
    private readonly restartDelayMs = 250,
  ) {}

  /** Start the daemon unless it runs; resolves to its client, or undefined if it could not. */
  start(): Promise<LanguageClient | undefined> {
    if (this.client) return Promise.resolve(this.client);
    this.pending ??= this.doStart().finally(() => {
      this.pending = undefined;
    });
    return this.pending;
  }

  /** Stop, then start again; calls within `restartDelayMs` of each other restart once. */
  restart(): Promise<LanguageClient | undefined> {
    clearTimeout(this.restartTimer);
    return new Promise((resolve) => {
      this.restartWaiters.push(resolve);
      this.restartTimer = setTimeout(() => {
        const waiters = this.restartWaiters;
        this.restartWaiters = [];
        void this.stop().then(() => this.start()).then((client) => {
          for (const waiter of waiters) waiter(client);
        });
      }, this.restartDelayMs);
    });
  }

  async stop(): Promise<void> {
    await this.pending;
    const client = this.client;
    this.client = undefined;
    if (client) {
      try {
        await client.stop(5000);
      } catch (error) {
        this.output.appendLine(`Server: Stop failed: ${String(error)}`);
      }
    }
  }

  dispose(): void {
    clearTimeout(this.restartTimer);
    void this.stop();
  }

  private async doStart(): Promise<LanguageClient | undefined> {
    const folder = vscode.workspace.workspaceFolders?.[0];
    const settings = getSettings(folder);
    const problem = await checkPython(settings.python, folder?.uri.fsPath);
    if (problem) {
      this.fail(problem);
      return undefined;
    }
    const client = new LanguageClient('vmd', 'vmd', serverOptions(settings, folder),
      clientOptions(settings, folder, this.output));
    try {
      this.output.appendLine(`Server: starting ${settings.python} -m vmd serve`);
      await client.start();
    } catch (error) {
      this.fail(error instanceof Error ? error.message : String(error));
      await client.dispose().catch(() => undefined);
      return undefined;
    }
    this.lastError = undefined;
    this.client = client;
    return client;
  }

  private fail(message: string): void {
    this.lastError = message;
    this.output.appendLine(`Server: Start failed: ${message}`);
    void vscode.window.showErrorMessage(`vmd: ${message}`, 'Open Settings', 'Show Output')
      .then((choice) => {
        if (choice === 'Open Settings') {
          void vscode.commands.executeCommand('workbench.action.openSettings', 'vmd.python');
        } else if (choice === 'Show Output') {
          this.output.show();
        }
      });
  }
}

function serverOptions(settings: Settings, folder: vscode.WorkspaceFolder | undefined): ServerOptions {
  return {
    command: settings.python,
    args: ['-m', 'vmd', 'serve'],
    // No `transport`: with TransportKind.stdio the client would append `--stdio`.
    options: { cwd: folder?.uri.fsPath },
  };
}

/**
 * The loader documents the daemon hears of: the `vmd.include` globs, relative to the folder.
 * A string pattern is matched on a document's absolute path, so each glob is anchored there.
 */
export function loaderSelector(include: string[], folder: vscode.WorkspaceFolder | undefined): DocumentSelector {
  const base = folder ? folder.uri.fsPath.replace(/\\/g, '/').replace(/\/$/, '') : '**'
  return include.map((glob) => ({ scheme: 'file', language: 'python', pattern: `${base}/${glob}` }));
}

function clientOptions(
  settings: Settings,
  folder: vscode.WorkspaceFolder | undefined,
  output: vscode.LogOutputChannel,
): LanguageClientOptions {
  return {
    documentSelector: loaderSelector(settings.include, folder),
    // Daemon logs (stderr), loader output and option warnings (window/logMessage) land here.
    outputChannel: output,
    initializationOptions: initializationOptions(settings),
    middleware: {
      provideCodeLenses: async (document, token, next) => retargetLenses(await next(document, token)),
    },
  };
}
