/**
 * What the extension shares with the daemon and the other clients. The wire types are the Node
 * client's (clients/node/src/protocol.ts, mirroring vmd/protocol.py), imported as types only:
 * they vanish from the compiled extension, which never loads the Node client.
 */
import type * as wire from '../../../node/src/protocol.js' with { 'resolution-mode': 'import' };

/** `data` of a loader error: where it failed and why. */
export type LoaderErrorData = wire.LoaderErrorData;

/** Result of `workspace/executeCommand` `vmd.preview`. */
export type PreviewResult = wire.PreviewResult;

/** Result of `workspace/executeCommand` `vmd.reload`. */
export type ReloadResult = wire.ReloadCommandResult;

/** The server-side commands (they run in the daemon). */
export const PREVIEW = 'vmd.preview';
export const RELOAD = 'vmd.reload';

/** The extension's own commands (client side: they also open and show things). */
export const OPEN_PREVIEW = 'vmd.openPreview';
export const RELOAD_LOADER = 'vmd.reloadLoader';
export const RESTART = 'vmd.restart';
export const SHOW_OUTPUT = 'vmd.showOutput';
