/** Preview documents: open the module a loader generates beside it, and reload loaders. */
import * as vscode from 'vscode';
import { ExecuteCommandRequest, type LanguageClient } from 'vscode-languageclient/node';
import { OPEN_PREVIEW, PREVIEW, RELOAD, type PreviewResult, type ReloadResult } from './protocol';

/**
 * What a command acts on: an explicit argument (module id, path, `file:`/`vmd:` URI), else the
 * active editor's document.
 */
export function targetOf(arg: unknown): string | undefined {
  if (typeof arg === 'string' && arg) return arg;
  if (arg instanceof vscode.Uri) return arg.scheme === 'file' ? arg.fsPath : arg.toString();
  const document = vscode.window.activeTextEditor?.document;
  if (!document) return undefined;
  return document.uri.scheme === 'file' ? document.uri.fsPath : document.uri.toString();
}

/**
 * Ask the daemon for the preview of `target`, then show its `vmd:` document beside the
 * current editor as JavaScript. The document refreshes in place when the daemon sends
 * `workspace/textDocumentContent/refresh`.
 */
export async function openPreview(client: LanguageClient, target: string): Promise<vscode.TextEditor> {
  const result = await client.sendRequest(ExecuteCommandRequest.type,
    { command: PREVIEW, arguments: [target] }) as PreviewResult;
  let document = await vscode.workspace.openTextDocument(vscode.Uri.parse(result.uri));
  if (document.languageId !== 'javascript') {
    document = await vscode.languages.setTextDocumentLanguage(document, 'javascript');
  }
  return vscode.window.showTextDocument(document, {
    viewColumn: vscode.ViewColumn.Beside,
    preserveFocus: true,
    preview: false,
  });
}

/** Re-run `target` (every id the daemon knows for a loader path). */
export async function reload(client: LanguageClient, target: string): Promise<ReloadResult> {
  return await client.sendRequest(ExecuteCommandRequest.type,
    { command: RELOAD, arguments: [target] }) as ReloadResult;
}

/**
 * The daemon's "Preview" lenses run its `vmd.preview` command, which only answers the URI:
 * point them at this extension's command, which also opens the document.
 */
export function retargetLenses(lenses: vscode.CodeLens[] | null | undefined): vscode.CodeLens[] | null | undefined {
  for (const lens of lenses ?? []) {
    if (lens.command?.command === PREVIEW) {
      lens.command = { ...lens.command, command: OPEN_PREVIEW };
    }
  }
  return lenses;
}
