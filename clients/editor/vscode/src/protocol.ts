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

// Values must ship in the .vsix, which holds only this folder, so the Node client's constants
// are declared again here, each typed as the Node client's: tsc fails the build if they differ.

/** The include globs when none are given (`vmd.include`'s default in package.json too). */
export const DEFAULT_INCLUDE: typeof wire.DEFAULT_INCLUDE = ['**/*.vmd.py'];

/** How to install vmd into an interpreter: `{python}` and `{checkout}` are filled in. */
export const INSTALL_HINT: typeof wire.INSTALL_HINT = 'Install vmd into that interpreter from a checkout of the vmd repository: `{python} -m pip install {checkout}` (vmd is not on PyPI: the "vmd" there is an unrelated project).';

/** The server-side commands (they run in the daemon). */
export const PREVIEW = 'vmd.preview';
export const RELOAD = 'vmd.reload';

/** The extension's own commands (client side: they also open and show things). */
export const OPEN_PREVIEW = 'vmd.openPreview';
export const RELOAD_LOADER = 'vmd.reloadLoader';
export const RESTART = 'vmd.restart';
export const SHOW_OUTPUT = 'vmd.showOutput';
