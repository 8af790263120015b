/** What the daemon's editor commands answer (vmd/editor.py; documented in protocol.md). */

/** `data` of a loader error: where it failed and why. */
export interface LoaderErrorData {
  id: string;
  message: string;
  file: string;
  line: number;
  kind: 'error' | 'timeout' | 'crash' | 'refused';
  traceback: string;
}

/** Result of `workspace/executeCommand` `vmd.preview`. */
export interface PreviewResult {
  id: string;
  /** The read-only document to open: `vmd:` + the encoded module id. */
  uri: string;
  code: string | null;
  version: number | null;
  error: LoaderErrorData | null;
  /** The document's text: the code, or the error as a JavaScript comment. */
  text: string;
}

/** Result of `workspace/executeCommand` `vmd.reload`. */
export interface ReloadResult {
  ids: string[];
  errors: LoaderErrorData[];
}

/** The server-side commands (they run in the daemon). */
export const PREVIEW = 'vmd.preview';
export const RELOAD = 'vmd.reload';

/** The extension's own commands (client side: they also open and show things). */
export const OPEN_PREVIEW = 'vmd.openPreview';
export const RELOAD_LOADER = 'vmd.reloadLoader';
export const RESTART = 'vmd.restart';
export const SHOW_OUTPUT = 'vmd.showOutput';
