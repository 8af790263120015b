/**
 * A stand-in for the `vscode` module, the only thing faked in these tests: VS Code itself
 * cannot run on the machines the tests run on. Everything else is real: the extension code,
 * vscode-languageclient, and the `python -m vmd serve` daemon it starts.
 *
 * It implements, in memory, the parts of the API that the extension and vscode-languageclient
 * use on the paths under test (documents, content providers, diagnostics, commands, editors,
 * output channels), and records what the extension showed so tests can assert on it. Any other
 * API is an inert stub (see `inert`).
 */
import * as path from 'node:path';

type Listener<T> = (event: T) => unknown;

// A DocumentFilter pattern (a glob, or a RelativePattern on a folder) against a file path, as
// VS Code matches it (a string on the whole absolute path): `**/` any folders (or none), `*`
// and `?` within one path segment.
function matchesPattern(pattern: any, file: string): boolean {
  const relative = typeof pattern !== 'string';
  const glob: string = relative ? pattern.pattern : pattern;
  const base: string | undefined = relative ? (pattern.base?.uri?.fsPath ?? pattern.base) : undefined;
  const target = base ? path.relative(base, file) : file;
  if (base && target.startsWith('..')) return false;
  let source = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (glob.startsWith('**/', i)) {
      source += '(?:.*/)?';
      i += 2;
    } else if (c === '*') {
      source += '[^/]*';
    } else if (c === '?') {
      source += '[^/]';
    } else {
      source += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
    }
  }
  return new RegExp(`^${source}$`).test(target);
}

// -- inert fallback ------------------------------------------------------------------------

/** A value for API the tests do not exercise: callable, constructible, any property. */
export function inert(name: string): any {
  const target = function () { /* inert */ } as any;
  return new Proxy(target, {
    get(obj, prop) {
      if (prop in obj) return obj[prop];
      if (typeof prop === 'symbol') return undefined;
      if (prop === 'then') return undefined; // not a thenable
      if (/^on(Did|Will)/.test(prop)) return obj[prop] = new EventEmitter<unknown>().event;
      return obj[prop] = inert(`${name}.${prop}`);
    },
    apply(_obj, _this, _args) {
      return name.includes('.register') || name.includes('.create') ? new Disposable(() => undefined) : undefined;
    },
    construct() {
      return {};
    },
  });
}

function namespace<T extends object>(name: string, real: T): T & Record<string, any> {
  return new Proxy(real as any, {
    get(obj, prop) {
      if (prop in obj || typeof prop === 'symbol') return obj[prop];
      return obj[prop] = /^on(Did|Will)/.test(prop) ? new EventEmitter<unknown>().event : inert(`${name}.${prop}`);
    },
  });
}

// -- basic types ---------------------------------------------------------------------------

export class Disposable {
  static from(...items: Array<{ dispose(): unknown }>): Disposable {
    return new Disposable(() => items.forEach((item) => item.dispose()));
  }
  constructor(private readonly onDispose: () => unknown) {}
  dispose(): void {
    this.onDispose();
  }
}

export class EventEmitter<T> {
  private listeners = new Set<Listener<T>>();
  readonly event = (listener: Listener<T>, thisArg?: unknown, disposables?: Disposable[]): Disposable => {
    const bound: Listener<T> = thisArg ? listener.bind(thisArg) : listener;
    this.listeners.add(bound);
    const disposable = new Disposable(() => this.listeners.delete(bound));
    disposables?.push(disposable);
    return disposable;
  };
  fire(event: T): void {
    for (const listener of [...this.listeners]) listener(event);
  }
  dispose(): void {
    this.listeners.clear();
  }
}

export class CancellationError extends Error {}

export class CancellationTokenSource {
  private emitter = new EventEmitter<void>();
  token = { isCancellationRequested: false, onCancellationRequested: this.emitter.event };
  cancel(): void {
    this.token.isCancellationRequested = true;
    this.emitter.fire();
  }
  dispose(): void {
    this.emitter.dispose();
  }
}

// VS Code's Uri encoding: path segments and the query are percent-encoded on toString(),
// including `=` and `&` in the query (which is what the daemon must cope with).
function encode(text: string, keepSlash: boolean): string {
  const out = encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return keepSlash ? out.replace(/%2F/g, '/') : out;
}

export class Uri {
  static parse(value: string): Uri {
    const match = /^([a-zA-Z][\w+.-]*):(?:\/\/([^/?#]*))?([^?#]*)(?:\?([^#]*))?(?:#(.*))?$/.exec(value);
    if (!match) throw new Error(`stub Uri.parse: cannot parse ${value}`);
    const dec = (s: string | undefined) => decodeURIComponent(s ?? '');
    return new Uri(match[1], dec(match[2]), dec(match[3]), dec(match[4]), dec(match[5]));
  }
  static file(fsPath: string): Uri {
    return new Uri('file', '', fsPath, '', '');
  }
  static from(parts: { scheme: string; authority?: string; path?: string; query?: string; fragment?: string }): Uri {
    return new Uri(parts.scheme, parts.authority ?? '', parts.path ?? '', parts.query ?? '', parts.fragment ?? '');
  }
  static joinPath(base: Uri, ...segments: string[]): Uri {
    return base.with({ path: path.posix.join(base.path, ...segments) });
  }
  constructor(
    readonly scheme: string,
    readonly authority: string,
    readonly path: string,
    readonly query: string,
    readonly fragment: string,
  ) {}
  get fsPath(): string {
    return this.path;
  }
  with(change: { scheme?: string; authority?: string; path?: string; query?: string; fragment?: string }): Uri {
    return new Uri(change.scheme ?? this.scheme, change.authority ?? this.authority,
      change.path ?? this.path, change.query ?? this.query, change.fragment ?? this.fragment);
  }
  toString(): string {
    let out = `${this.scheme}:`;
    if (this.authority || this.scheme === 'file') out += `//${encode(this.authority, false)}`;
    out += encode(this.path, true);
    if (this.query) out += `?${encode(this.query, false)}`;
    if (this.fragment) out += `#${encode(this.fragment, false)}`;
    return out;
  }
  toJSON(): unknown {
    return { scheme: this.scheme, path: this.path, query: this.query };
  }
}

export class Position {
  constructor(readonly line: number, readonly character: number) {}
  isBefore(other: Position): boolean {
    return this.line < other.line || (this.line === other.line && this.character < other.character);
  }
}

export class Range {
  readonly start: Position;
  readonly end: Position;
  constructor(a: Position | number, b: Position | number, c?: number, d?: number) {
    this.start = typeof a === 'number' ? new Position(a, b as number) : a;
    this.end = typeof a === 'number' ? new Position(c as number, d as number) : b as Position;
  }
  contains(p: Position): boolean {
    return !p.isBefore(this.start) && !this.end.isBefore(p);
  }
}

export class Location {
  constructor(readonly uri: Uri, readonly range: Range) {}
}

export enum DiagnosticSeverity { Error = 0, Warning = 1, Information = 2, Hint = 3 }
export enum DiagnosticTag { Unnecessary = 1, Deprecated = 2 }
export enum ViewColumn { Active = -1, Beside = -2, One = 1, Two = 2 }
export enum LogLevel { Off = 0, Trace = 1, Debug = 2, Info = 3, Warning = 4, Error = 5 }
export enum ProgressLocation { SourceControl = 1, Window = 10, Notification = 15 }
export enum EndOfLine { LF = 1, CRLF = 2 }

export class Diagnostic {
  source?: string;
  code?: unknown;
  tags?: DiagnosticTag[];
  relatedInformation?: unknown[];
  constructor(readonly range: Range, readonly message: string, readonly severity = DiagnosticSeverity.Error) {}
}

export class Command {}

export class CodeLens {
  constructor(public range: Range, public command?: { title: string; command: string; arguments?: unknown[] }) {}
  get isResolved(): boolean {
    return !!this.command;
  }
}

export class MarkdownString {
  constructor(public value = '', public supportThemeIcons = false) {}
  appendMarkdown(text: string): this {
    this.value += text;
    return this;
  }
  appendText(text: string): this {
    this.value += text;
    return this;
  }
  appendCodeblock(code: string, language = ''): this {
    this.value += `\n\`\`\`${language}\n${code}\n\`\`\`\n`;
    return this;
  }
}

export class Hover {
  readonly contents: MarkdownString[];
  constructor(contents: MarkdownString | MarkdownString[], readonly range?: Range) {
    this.contents = Array.isArray(contents) ? contents : [contents];
  }
}

// Classes vscode-languageclient extends at load time; unused on the paths under test.
export class CompletionItem { constructor(public label: unknown) {} }
export class CodeAction { constructor(public title: string, public kind?: unknown) {} }
export class DocumentLink { constructor(public range: Range, public target?: Uri) {} }
export class InlayHint { constructor(public position: Position, public label: unknown) {} }
export class CallHierarchyItem { constructor(...args: unknown[]) { void args; } }
export class TypeHierarchyItem { constructor(...args: unknown[]) { void args; } }
export class SymbolInformation { constructor(...args: unknown[]) { void args; } }
export class TabInputText { constructor(readonly uri: Uri) {} }
export class TabInputTextDiff { constructor(readonly original: Uri, readonly modified: Uri) {} }
export class TabInputCustom { constructor(readonly uri: Uri, readonly viewType: string) {} }
export class TabInputNotebook { constructor(readonly uri: Uri, readonly notebookType: string) {} }
export class RelativePattern { constructor(readonly base: unknown, readonly pattern: string) {} }
export const CodeActionKind = inert('CodeActionKind');

// -- documents -----------------------------------------------------------------------------

const LANGUAGES: Record<string, string> = { '.py': 'python', '.js': 'javascript', '.csv': 'csv' };

export class TextDocument {
  version = 1;
  isClosed = false;
  isDirty = false;
  isUntitled = false;
  eol = EndOfLine.LF;
  constructor(readonly uri: Uri, public languageId: string, private text: string) {}
  get fileName(): string {
    return this.uri.fsPath;
  }
  get lineCount(): number {
    return this.text.split('\n').length;
  }
  getText(): string {
    return this.text;
  }
  setText(text: string): void {
    this.text = text;
    this.version += 1;
  }
  lineAt(line: number): { text: string } {
    return { text: this.text.split('\n')[line] ?? '' };
  }
  save(): Promise<boolean> {
    return Promise.resolve(true);
  }
}

/** What a test can see and drive. */
export const stub = {
  settings: {} as Record<string, unknown>,
  contentProviders: new Map<string, { provideTextDocumentContent(uri: Uri, token: unknown): any; onDidChange?: any }>(),
  providers: { codeLens: [] as any[], hover: [] as any[] },
  commands: new Map<string, (...args: unknown[]) => unknown>(),
  diagnostics: new Map<string, DiagnosticCollection>(),
  messages: [] as Array<{ level: 'error' | 'warning' | 'info'; message: string }>,
  shown: [] as Array<{ document: TextDocument; options: any }>,
  outputs: new Map<string, OutputChannel>(),
  /** Every version of every vmd:-style virtual document's text, as VS Code would re-read it. */
  virtual: new Map<string, TextDocument>(),
  onDidOpen: new EventEmitter<TextDocument>(),
  onDidClose: new EventEmitter<TextDocument>(),
  onDidChangeConfiguration: new EventEmitter<{ affectsConfiguration(section: string): boolean }>(),
  reset(): void {
    this.settings = {};
    this.messages.length = 0;
    this.shown.length = 0;
    workspace.textDocuments.length = 0;
    window.activeTextEditor = undefined;
  },
};

function languageOf(uri: Uri): string {
  return LANGUAGES[path.extname(uri.path)] ?? 'plaintext';
}

async function readVirtual(uri: Uri, document: TextDocument): Promise<void> {
  const provider = stub.contentProviders.get(uri.scheme);
  if (!provider) throw new Error(`no content provider for ${uri.scheme}:`);
  const text = await provider.provideTextDocumentContent(uri, new CancellationTokenSource().token);
  document.setText(text ?? '');
}

// -- namespaces ----------------------------------------------------------------------------

export class DiagnosticCollection {
  private entries = new Map<string, Diagnostic[]>();
  constructor(readonly name: string) {}
  set(uri: Uri | Array<[Uri, Diagnostic[]]>, diagnostics?: Diagnostic[]): void {
    if (Array.isArray(uri)) {
      for (const [u, d] of uri) this.entries.set(u.toString(), d);
    } else {
      this.entries.set(uri.toString(), diagnostics ?? []);
    }
  }
  get(uri: Uri): Diagnostic[] {
    return this.entries.get(uri.toString()) ?? [];
  }
  has(uri: Uri): boolean {
    return this.entries.has(uri.toString());
  }
  delete(uri: Uri): void {
    this.entries.delete(uri.toString());
  }
  clear(): void {
    this.entries.clear();
  }
  forEach(fn: (uri: Uri, diagnostics: Diagnostic[]) => void): void {
    for (const [u, d] of this.entries) fn(Uri.parse(u), d);
  }
  dispose(): void {
    this.entries.clear();
  }
}

export class OutputChannel {
  lines: string[] = [];
  logLevel = LogLevel.Info;
  onDidChangeLogLevel = new EventEmitter<LogLevel>().event;
  constructor(readonly name: string) {}
  append(text: string): void {
    this.lines.push(text);
  }
  appendLine(text: string): void {
    this.lines.push(text);
  }
  replace(text: string): void {
    this.lines = [text];
  }
  trace(text: string): void { this.lines.push(text); }
  debug(text: string): void { this.lines.push(text); }
  info(text: string): void { this.lines.push(text); }
  warn(text: string): void { this.lines.push(text); }
  error(text: unknown): void { this.lines.push(String(text)); }
  clear(): void { this.lines = []; }
  show(): void { /* nothing to show */ }
  hide(): void { /* nothing to hide */ }
  dispose(): void { /* kept for assertions */ }
}

export const workspace = namespace('workspace', {
  workspaceFolders: undefined as Array<{ uri: Uri; name: string; index: number }> | undefined,
  textDocuments: [] as TextDocument[],
  notebookDocuments: [] as unknown[],
  onDidOpenTextDocument: stub.onDidOpen.event,
  onDidCloseTextDocument: stub.onDidClose.event,
  onDidChangeConfiguration: stub.onDidChangeConfiguration.event,
  getConfiguration(section?: string) {
    const prefix = section ? `${section}.` : '';
    return {
      get: <T>(key: string, fallback?: T): T | undefined =>
        (prefix + key in stub.settings ? stub.settings[prefix + key] : fallback) as T | undefined,
      has: (key: string) => prefix + key in stub.settings,
      inspect: () => undefined,
      update: (key: string, value: unknown) => {
        stub.settings[prefix + key] = value;
        return Promise.resolve();
      },
    };
  },
  getWorkspaceFolder(uri: Uri) {
    return workspace.workspaceFolders?.find((f) => uri.path.startsWith(f.uri.path + '/'));
  },
  registerTextDocumentContentProvider(scheme: string, provider: any): Disposable {
    stub.contentProviders.set(scheme, provider);
    // Like VS Code: an open document of that scheme is read again when the provider says so.
    const listening = provider.onDidChange?.((uri: Uri) => {
      const document = stub.virtual.get(uri.toString());
      if (document) void readVirtual(uri, document);
    });
    return new Disposable(() => {
      listening?.dispose();
      if (stub.contentProviders.get(scheme) === provider) stub.contentProviders.delete(scheme);
    });
  },
  async openTextDocument(uri: Uri): Promise<TextDocument> {
    const key = uri.toString();
    const open = workspace.textDocuments.find((d) => d.uri.toString() === key);
    if (open) return open;
    let document: TextDocument;
    if (uri.scheme === 'file') {
      const fs = await import('node:fs/promises');
      document = new TextDocument(uri, languageOf(uri), await fs.readFile(uri.fsPath, 'utf8'));
    } else {
      document = new TextDocument(uri, languageOf(uri), '');
      await readVirtual(uri, document);
      stub.virtual.set(key, document);
    }
    workspace.textDocuments.push(document);
    stub.onDidOpen.fire(document);
    return document;
  },
  createFileSystemWatcher() {
    return { onDidCreate: new EventEmitter().event, onDidChange: new EventEmitter().event,
      onDidDelete: new EventEmitter().event, dispose() { /* nothing */ } };
  },
});

export const languages = namespace('languages', {
  createDiagnosticCollection(name = '') {
    const collection = new DiagnosticCollection(name);
    stub.diagnostics.set(name, collection);
    return collection;
  },
  registerCodeLensProvider(selector: unknown, provider: unknown): Disposable {
    stub.providers.codeLens.push({ selector, provider });
    return new Disposable(() => { stub.providers.codeLens = stub.providers.codeLens.filter((p) => p.provider !== provider); });
  },
  registerHoverProvider(selector: unknown, provider: unknown): Disposable {
    stub.providers.hover.push({ selector, provider });
    return new Disposable(() => { stub.providers.hover = stub.providers.hover.filter((p) => p.provider !== provider); });
  },
  match(selector: any, document: TextDocument): number {
    const filters = Array.isArray(selector) ? selector : [selector];
    for (const filter of filters) {
      if (typeof filter === 'string') {
        if (filter === document.languageId) return 10;
        continue;
      }
      if (filter.scheme && filter.scheme !== document.uri.scheme) continue;
      if (filter.language && filter.language !== document.languageId) continue;
      if (filter.pattern && !matchesPattern(filter.pattern, document.uri.fsPath)) continue;
      return 10;
    }
    return 0;
  },
  async setTextDocumentLanguage(document: TextDocument, languageId: string): Promise<TextDocument> {
    document.languageId = languageId;
    return document;
  },
});

export const window = namespace('window', {
  activeTextEditor: undefined as { document: TextDocument } | undefined,
  visibleTextEditors: [] as unknown[],
  tabGroups: { all: [], onDidChangeTabs: new EventEmitter().event, onDidChangeTabGroups: new EventEmitter().event },
  createOutputChannel(name: string): OutputChannel {
    const channel = new OutputChannel(name);
    stub.outputs.set(name, channel);
    return channel;
  },
  showErrorMessage(message: string): Promise<undefined> {
    stub.messages.push({ level: 'error', message });
    return Promise.resolve(undefined);
  },
  showWarningMessage(message: string): Promise<undefined> {
    stub.messages.push({ level: 'warning', message });
    return Promise.resolve(undefined);
  },
  showInformationMessage(message: string): Promise<undefined> {
    stub.messages.push({ level: 'info', message });
    return Promise.resolve(undefined);
  },
  async showTextDocument(document: TextDocument, options?: unknown) {
    stub.shown.push({ document, options });
    return { document, viewColumn: ViewColumn.Two };
  },
  withProgress(_options: unknown, task: (progress: unknown, token: unknown) => unknown) {
    return task({ report() { /* nothing */ } }, new CancellationTokenSource().token);
  },
});

export const commands = namespace('commands', {
  registerCommand(id: string, fn: (...args: unknown[]) => unknown): Disposable {
    if (stub.commands.has(id)) throw new Error(`command '${id}' already exists`);
    stub.commands.set(id, fn);
    return new Disposable(() => stub.commands.delete(id));
  },
  async executeCommand(id: string, ...args: unknown[]): Promise<unknown> {
    const fn = stub.commands.get(id);
    if (!fn) throw new Error(`command '${id}' not found`);
    return await fn(...args);
  },
});

export const env = namespace('env', { appName: 'Visual Studio Code (stub)', language: 'en', machineId: 'test' });
export const extensions = namespace('extensions', { all: [] as unknown[] });
export const version = '1.91.0';
