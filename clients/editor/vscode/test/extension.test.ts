/**
 * The extension's logic against a real daemon (`python -m vmd serve`) through the real
 * vscode-languageclient. Only the `vscode` module is stood in for (test/vscode-stub.ts): VS Code
 * itself cannot run on these machines. Waits poll editor state; there are no fixed sleeps.
 */
import { stub } from './setup';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as vscode from 'vscode';
import { checkPython, Daemon, loaderSelector } from '../src/daemon';
import { activate, deactivate } from '../src/extension';
import { retargetLenses } from '../src/preview';
import { getSettings, initializationOptions, resolvePython } from '../src/settings';

const REPO = path.resolve(__dirname, '../../../../..');
const PYTHON = process.env.VMD_PYTHON ?? path.join(REPO, '.venv', 'bin', 'python');

const USERS = `import vmd

watch = ["data/*.csv"]

def load(ctx):
    print("hello from users")
    names = [(ctx.path.parent / f).read_text().strip() for f in ctx.watched_files]
    return vmd.json_module({"kind": ctx.query.get("type", "all"), "names": names})
`;

const BROKEN = `import vmd

watch = ["data/*.csv"]

def load(ctx):
    rows = []
    raise RuntimeError("broken on purpose")
`;

async function waitFor<T>(what: string, probe: () => T | undefined | false, timeoutMs = 15000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const token = () => new vscode.CancellationTokenSource().token;

describe('vmd extension against a real daemon', () => {
  let root: string;
  let loader: string;
  let daemon: Daemon;
  let loaderDoc: vscode.TextDocument;
  const context = { subscriptions: [] as vscode.Disposable[] };

  before(async () => {
    root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'vmd-vscode-')));
    fs.mkdirSync(path.join(root, 'src', 'data'), { recursive: true });
    fs.writeFileSync(path.join(root, 'src', 'data', 'a.csv'), 'ada\n');
    fs.writeFileSync(path.join(root, 'src', 'data', 'b.csv'), 'bob\n');
    loader = path.join(root, 'src', 'users.vmd.py');
    fs.writeFileSync(loader, USERS);
    (vscode.workspace as { workspaceFolders: unknown }).workspaceFolders =
      [{ uri: vscode.Uri.file(root), name: 'proj', index: 0 }];
    stub.settings['vmd.python'] = PYTHON;
    daemon = await activate(context as unknown as vscode.ExtensionContext);
    loaderDoc = await vscode.workspace.openTextDocument(vscode.Uri.file(loader));
    (vscode.window as { activeTextEditor: unknown }).activeTextEditor = { document: loaderDoc };
  });

  after(async () => {
    await deactivate();
    for (const disposable of context.subscriptions) disposable.dispose();
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('starts the daemon and registers a content provider for vmd: documents', () => {
    assert.ok(daemon.client, daemon.lastError);
    const caps = daemon.client.initializeResult?.capabilities as { workspace?: { textDocumentContent?: unknown } };
    assert.deepEqual(caps.workspace?.textDocumentContent, { schemes: ['vmd'] });
    assert.ok(stub.contentProviders.has('vmd'));
  });

  it('opens the preview beside the loader as JavaScript and refreshes it in place', async () => {
    await vscode.commands.executeCommand('vmd.openPreview');
    const { document, options } = stub.shown.at(-1)!;
    assert.equal(document.uri.scheme, 'vmd');
    assert.equal(document.uri.path, loader);
    assert.equal(document.languageId, 'javascript');
    assert.deepEqual(options, { viewColumn: vscode.ViewColumn.Beside, preserveFocus: true, preview: false });
    assert.match(document.getText(), /\\"names\\":\[\\"ada\\",\\"bob\\"\]/);
    fs.writeFileSync(path.join(root, 'src', 'data', 'b.csv'), 'zed\n');
    await waitFor('the preview to show the new file', () => document.getText().includes('zed'));
  });

  it('previews one id per query, with VS Code encoding the query', async () => {
    await vscode.commands.executeCommand('vmd.openPreview', `${loader}?type=admin`);
    const { document } = stub.shown.at(-1)!;
    assert.equal(document.uri.query, 'type=admin');
    assert.ok(document.uri.toString().endsWith('?type%3Dadmin'));
    assert.match(document.getText(), /\\"kind\\":\\"admin\\"/);
  });

  it('turns preview lenses into the extension command and runs Reload in the daemon', async () => {
    const { provider } = stub.providers.codeLens[0];
    const lenses = await provider.provideCodeLenses(loaderDoc, token()) as vscode.CodeLens[];
    assert.deepEqual(lenses.map((l) => l.command?.title), ['Preview module', 'Preview ?type=admin', 'Reload']);
    assert.deepEqual(lenses.map((l) => l.command?.command), ['vmd.openPreview', 'vmd.openPreview', 'vmd.reload']);
    assert.equal(lenses[0].range.start.line, 4);
    const reload = lenses[2].command!;
    const result = await vscode.commands.executeCommand(reload.command, ...(reload.arguments ?? [])) as { ids: string[] };
    assert.deepEqual(result.ids, [loader, `${loader}?type=admin`]);
  });

  it('lists the files a watch glob matches on hover', async () => {
    const { provider } = stub.providers.hover[0];
    const hover = await provider.provideHover(loaderDoc, new vscode.Position(2, 12), token()) as vscode.Hover;
    const text = (hover.contents[0] as vscode.MarkdownString).value;
    assert.match(text, /`data\/\*\.csv` matches 2 files/);
    assert.match(text, /- `data\/a\.csv`/);
  });

  it('shows loader output in the output channel', async () => {
    const output = stub.outputs.get('vmd')!;
    await waitFor('loader output', () => output.lines.some((l) => l.includes('hello from users')));
  });

  it('shows a loader error as a diagnostic on the failing line and in the preview', async () => {
    const preview = stub.shown[0].document;
    fs.writeFileSync(loader, BROKEN);
    const uri = vscode.Uri.file(loader);
    const diagnostics = await waitFor('a diagnostic on the loader', () => {
      for (const collection of stub.diagnostics.values()) {
        const found = collection.get(uri);
        if (found.length > 0) return found;
      }
      return undefined;
    });
    assert.equal(diagnostics[0].range.start.line, 6);
    assert.equal(diagnostics[0].severity, vscode.DiagnosticSeverity.Error);
    assert.match(diagnostics[0].message, /RuntimeError: broken on purpose/);
    await waitFor('the preview to show the error', () => preview.getText().startsWith(`// vmd: ${loader} failed`));
    fs.writeFileSync(loader, USERS);
    await waitFor('the diagnostic to clear', () =>
      [...stub.diagnostics.values()].every((c) => c.get(uri).length === 0));
    await waitFor('the preview to recover', () => preview.getText().includes('zed'));
  });

  it('restarts the daemon and keeps previews live', async () => {
    const before = daemon.client;
    const client = await vscode.commands.executeCommand('vmd.restart');
    assert.ok(client && client !== before);
    const preview = stub.shown[0].document;
    // The new daemon has not loaded anything: the provider is asked again on refresh.
    await vscode.commands.executeCommand('vmd.openPreview', loader);
    fs.writeFileSync(path.join(root, 'src', 'data', 'a.csv'), 'amy\n');
    await waitFor('the preview to follow the restarted daemon', () => preview.getText().includes('amy'));
  });
});

describe('start-up problems are explained', () => {
  it('names a missing interpreter', async () => {
    const why = await checkPython('/nonexistent/python3');
    assert.match(why ?? '', /Python interpreter "\/nonexistent\/python3" was not found/);
  });

  it('names a Python without vmd', async (t) => {
    const bare = ['/usr/bin/python3', '/usr/local/bin/python3'].find((p) => fs.existsSync(p));
    if (!bare || !(await checkPython(bare, os.tmpdir()))) {
      t.skip('no interpreter without vmd here');
      return;
    }
    assert.match((await checkPython(bare, os.tmpdir()))!, /vmd is not installed for .*pip install path\/to\/vmd/);
  });

  it('shows the problem to the user instead of starting', async () => {
    stub.reset();
    stub.settings['vmd.python'] = '/nonexistent/python3';
    const output = vscode.window.createOutputChannel('vmd-failing', { log: true });
    const failing = new Daemon(output);
    assert.equal(await failing.start(), undefined);
    assert.match(stub.messages[0]?.message ?? '', /^vmd: Python interpreter .* was not found/);
    assert.ok((output as unknown as { lines: string[] }).lines.some((l) => l.startsWith('Server: Start failed:')));
  });
});

describe('settings and lenses', () => {
  it('resolves the interpreter from the setting, the folder .venv, then PATH', () => {
    assert.equal(resolvePython('${workspaceFolder}/env/bin/python', '/proj'), '/proj/env/bin/python');
    assert.equal(resolvePython('  /usr/bin/python3 ', '/proj'), '/usr/bin/python3');
    const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'vmd-venv-'));
    fs.mkdirSync(path.join(folder, '.venv', 'bin'), { recursive: true });
    fs.writeFileSync(path.join(folder, '.venv', 'bin', 'python'), '');
    assert.equal(resolvePython('', folder), path.join(folder, '.venv', 'bin', 'python'));
    fs.rmSync(folder, { recursive: true, force: true });
    assert.equal(resolvePython('', undefined), 'python3');
  });

  it('sends vmd.memoryLimitMb only when set, 0 included; an unusable one leaves the default', () => {
    const sent = (value: unknown) => {
      stub.settings['vmd.memoryLimitMb'] = value;
      try {
        return initializationOptions(getSettings(undefined)).memoryLimitMb;
      } finally {
        delete stub.settings['vmd.memoryLimitMb'];
      }
    };
    assert.equal(sent(512), 512);
    assert.equal(sent(0), 0); // no limit, not the default
    for (const unusable of [null, -1, 1.5, '512']) assert.equal(sent(unusable), undefined, String(unusable));
    assert.ok(!('memoryLimitMb' in initializationOptions(getSettings(undefined))));
  });

  it('hears of the documents the vmd.include globs match, relative to the folder', () => {
    const folder = { uri: vscode.Uri.file('/proj'), name: 'proj', index: 0 } as vscode.WorkspaceFolder;
    const selector = loaderSelector(['**/*.vmd.py', 'loaders/*.py'], folder) as vscode.DocumentSelector;
    const doc = (file: string) => ({ uri: vscode.Uri.file(file), languageId: 'python' }) as vscode.TextDocument;
    assert.ok(vscode.languages.match(selector, doc('/proj/src/users.vmd.py')));
    assert.ok(vscode.languages.match(selector, doc('/proj/loaders/extra.py')));
    assert.ok(!vscode.languages.match(selector, doc('/proj/src/helpers.py')));
    assert.ok(!vscode.languages.match(selector, doc('/elsewhere/loaders/extra.py')));
  });

  it('retargets only the preview lenses', () => {
    const range = new vscode.Range(0, 0, 0, 0);
    const lenses = [
      new vscode.CodeLens(range, { title: 'Preview module', command: 'vmd.preview', arguments: ['/a.vmd.py'] }),
      new vscode.CodeLens(range, { title: 'Reload', command: 'vmd.reload', arguments: ['/a.vmd.py'] }),
    ];
    retargetLenses(lenses);
    assert.deepEqual(lenses.map((l) => l.command?.command), ['vmd.openPreview', 'vmd.reload']);
    assert.deepEqual(lenses[0].command?.arguments, ['/a.vmd.py']);
  });
});
