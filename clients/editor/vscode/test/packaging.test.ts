/**
 * What the .vsix ships runs on its own: the wire types come from the Node client as type-only
 * imports, which must vanish when compiled, since the .vsix carries only this folder.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';

const compiled = path.join(__dirname, '..', 'src');

describe('the compiled extension', () => {
  it('loads nothing from the Node client', () => {
    const files = fs.readdirSync(compiled).filter((f) => f.endsWith('.js'));
    assert.ok(files.includes('extension.js'), `no extension.js in ${compiled}`);
    for (const file of files) {
      const text = fs.readFileSync(path.join(compiled, file), 'utf8');
      assert.doesNotMatch(text, /node\/src|require\([^)]*\.\.\/\.\.\/\.\.\/node/, file);
    }
  });
});
