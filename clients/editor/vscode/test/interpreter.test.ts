/**
 * The interpreter is found as clients/README.md says every client finds it, except that the
 * extension does not read VMD_PYTHON (settings.ts says why).
 */
import './setup';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { resolvePython } from '../src/settings';

describe('finding the interpreter', () => {
  it('takes the nearest .venv from the workspace folder up, whatever VMD_PYTHON says', () => {
    const top = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'vmd-venv-')));
    const python = path.join(top, '.venv', 'bin', 'python');
    const folder = path.join(top, 'packages', 'web');
    fs.mkdirSync(path.dirname(python), { recursive: true });
    fs.mkdirSync(folder, { recursive: true });
    fs.writeFileSync(python, '');
    const saved = process.env.VMD_PYTHON;
    process.env.VMD_PYTHON = '/opt/py/bin/python';
    try {
      assert.equal(resolvePython('', folder), python);
      assert.equal(resolvePython('', top), python);
      assert.equal(resolvePython('/my/python', folder), '/my/python');
    } finally {
      if (saved === undefined) delete process.env.VMD_PYTHON;
      else process.env.VMD_PYTHON = saved;
      fs.rmSync(top, { recursive: true, force: true });
    }
  });
});
