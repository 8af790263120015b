// Types for importing loaders from TypeScript, as `vite/client` does for assets: reference them
// once, with `/// <reference types="vite-plugin-vmd/client" />` in a `.d.ts` of the app or
// `"types": ["vite-plugin-vmd/client"]` in tsconfig.json.
//
// A loader may return any JavaScript module, so whatever it exports (default, named or the
// namespace) is typed `any`. An import with a query needs its own line in the app, since a
// pattern may hold one `*` only: `declare module '*.vmd.py?type=dog'`.
declare module '*.vmd.py'
