/**
 * Make `require('vscode')` return the stand-in (test/vscode-stub.ts), for the extension and for
 * vscode-languageclient alike. Import this first in every test file.
 */
import Module from 'node:module';
import * as stubModule from './vscode-stub';

const exported = new Proxy(stubModule as Record<string, unknown>, {
  get(target, prop) {
    if (typeof prop === 'symbol' || prop in target) return target[prop as string];
    // API the stub does not implement is inert (see vscode-stub.ts).
    return (target[prop] = stubModule.inert(prop));
  },
});

type Load = (request: string, parent: unknown, isMain: boolean) => unknown;
const internals = Module as unknown as { _load: Load };
const load = internals._load;
internals._load = function (request: string, parent: unknown, isMain: boolean) {
  return request === 'vscode' ? exported : load.call(this, request, parent, isMain);
};

export const { stub } = stubModule;
