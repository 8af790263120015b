// Plugin options: defaults filled in, and anything unusable refused as the config loads,
// naming the option, rather than failing later or being silently ignored.
import { describe, expect, test } from 'vitest'
import vmd from './index.js'
import { VmdOptionError, checkOptions } from './options.js'

describe('checkOptions', () => {
  test('fills in the defaults', () => {
    const defaults = { python: undefined, include: ['**/*.vmd.py'], timeoutMs: 30_000, memoryLimitMb: undefined }
    expect(checkOptions(undefined)).toStrictEqual(defaults)
    expect(checkOptions({})).toStrictEqual(defaults)
  })

  test('keeps valid values, a single glob becoming a list', () => {
    expect(checkOptions({ python: '/opt/py/bin/python', include: 'loaders/*.py', timeoutMs: 500, memoryLimitMb: 512 })).toEqual({
      python: '/opt/py/bin/python',
      include: ['loaders/*.py'],
      timeoutMs: 500,
      memoryLimitMb: 512,
    })
    expect(checkOptions({ include: ['a/*.vmd.py', 'b/*.vmd.py'] }).include).toEqual(['a/*.vmd.py', 'b/*.vmd.py'])
  })

  test('keeps memoryLimitMb 0, which means no limit, not the default', () => {
    expect(checkOptions({ memoryLimitMb: 0 }).memoryLimitMb).toBe(0)
  })

  test.each([
    [{ timeoutMs: -5 }, 'option "timeoutMs" must be a positive whole number of milliseconds, got -5'],
    [{ timeoutMs: 0 }, 'option "timeoutMs" must be a positive whole number of milliseconds, got 0'],
    [{ timeoutMs: '5000' }, 'option "timeoutMs" must be a positive whole number of milliseconds, got "5000"'],
    [{ timeoutMs: Number.NaN }, 'option "timeoutMs" must be a positive whole number of milliseconds, got NaN'],
    [{ timeoutMs: 1500.5 }, 'option "timeoutMs" must be a positive whole number of milliseconds, got 1500.5'],
    [{ memoryLimitMb: -1 }, 'option "memoryLimitMb" must be a whole number of megabytes, 0 or more (0: no limit), got -1'],
    [{ memoryLimitMb: 1.5 }, 'option "memoryLimitMb" must be a whole number of megabytes, 0 or more (0: no limit), got 1.5'],
    [{ memoryLimitMb: '512' }, 'option "memoryLimitMb" must be a whole number of megabytes, 0 or more (0: no limit), got "512"'],
    [{ memoryLimitMb: null }, 'option "memoryLimitMb" must be a whole number of megabytes, 0 or more (0: no limit), got null'],
    [{ include: 'src/**/*.{vmd,data}.py' }, 'option "include": "src/**/*.{vmd,data}.py" uses glob syntax vmd does not read ({a,b} alternatives, !negation or @(…) patterns); vmd globs have *, ?, [...] and **: give each alternative as its own glob'],
    [{ include: ['**/*.vmd.py', '!src/old/**'] }, 'option "include": "!src/old/**" uses glob syntax vmd does not read ({a,b} alternatives, !negation or @(…) patterns); vmd globs have *, ?, [...] and **: give each alternative as its own glob'],
    [{ include: [] }, 'option "include" must be a glob or a non-empty list of globs, got an empty list'],
    [{ include: 42 }, 'option "include" must be a glob or a non-empty list of globs, got 42'],
    [{ include: ['ok/*.py', ''] }, 'option "include" must be a glob or a non-empty list of globs, got ["ok/*.py", ""]'],
    [{ python: '' }, 'option "python" must be the path or name of a Python interpreter, got ""'],
    [{ python: ['python3'] }, 'option "python" must be the path or name of a Python interpreter, got ["python3"]'],
    [{ timeout: 5000 }, 'unknown option "timeout" (the options are python, include, timeoutMs, memoryLimitMb)'],
    [{ memoryLimit: 512 }, 'unknown option "memoryLimit" (the options are python, include, timeoutMs, memoryLimitMb)'],
    ['python3', 'options must be an object, got "python3"'],
  ])('refuses %j', (options, message) => {
    expect(() => checkOptions(options)).toThrow(new VmdOptionError(message))
    expect(() => checkOptions(options)).toThrow(`vmd: ${message}`)
  })
})

test('the plugin refuses a bad option when it is created, as Vite loads the config', () => {
  // `include: []` would otherwise make every .py import a loader candidate in the plugin
  // (an empty filter matches everything) while the daemon fell back to its default.
  expect(() => vmd({ include: [] })).toThrow(VmdOptionError)
  expect(() => vmd({ timeoutMs: 'x' as unknown as number })).toThrow('option "timeoutMs"')
  expect(() => vmd({ memoryLimitMb: -1 })).toThrow('option "memoryLimitMb"')
  expect(vmd({ timeoutMs: 1000 }).name).toBe('vmd')
  expect(vmd({ memoryLimitMb: 0 }).name).toBe('vmd')
})
