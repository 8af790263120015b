// Strict id and request-URL parsing: one spelling per loader id, everything else refused.
import { describe, expect, test } from 'vitest'
import { RefusedIdError, canonicalId, mentionsPython, parseId, parseRequestUrl } from './ids.js'

describe('parseId', () => {
  test('accepts plain key=value queries', () => {
    expect(parseId('/p/a.vmd.py')).toEqual({ path: '/p/a.vmd.py', query: '' })
    expect(parseId('/p/a.vmd.py?type=dog&n=2')).toEqual({ path: '/p/a.vmd.py', query: 'type=dog&n=2' })
    expect(parseId('/p/a.vmd.py?q=a%20b&path=x/y')).toEqual({ path: '/p/a.vmd.py', query: 'q=a%20b&path=x/y' })
  })

  test.each([
    '/p/a.vmd.py?raw',
    '/p/a.vmd.py?raw??',
    '/p/a.vmd.py?import&raw',
    '/p/a.vmd.py?inline&import',
    '/p/a.vmd.py?url=1',
    '/p/a.vmd.py?a=1?raw',
    '/p/a.vmd.py?a=%3F',
    '/p/a.vmd.py?a=%23x',
    '/p/a.vmd.py?a=%5C',
    '/p/a.vmd.py?a=%00',
    '/p/a.vmd.py?a=%zz',
    '/p/a.vmd.py?a=1&a=2',
    '/p/a.vmd.py?a=1&',
    '/p/a.vmd.py?',
    '/p/a.vmd.py#x',
    '/p/a.vmd.py?a=1#x',
    '/p/a.vmd.py?t=1700000000000',
  ])('refuses %s', (id) => {
    expect(() => parseId(id)).toThrow(RefusedIdError)
  })
})

describe('canonicalId', () => {
  test('gives an import one spelling whether Vite decoded its query or not', () => {
    // As written in a source file (a build) and as the dev server hands it over, decoded.
    expect(canonicalId('./a.vmd.py?title=hello%20world')).toBe('./a.vmd.py?title=hello%20world')
    expect(canonicalId('./a.vmd.py?title=hello world')).toBe('./a.vmd.py?title=hello%20world')
    expect(canonicalId('./a.vmd.py?name=caf%C3%A9')).toBe('./a.vmd.py?name=caf%C3%A9')
    expect(canonicalId('./a.vmd.py?name=café')).toBe('./a.vmd.py?name=caf%C3%A9')
    expect(canonicalId('./a.vmd.py?pct=100%')).toBe('./a.vmd.py?pct=100%25')
    expect(canonicalId('./a.vmd.py?a=%zz')).toBe('./a.vmd.py?a=%25zz') // not an escape: text
    expect(canonicalId('./a.vmd.py?type=dog&n=2')).toBe('./a.vmd.py?type=dog&n=2')
    expect(canonicalId('./a.vmd.py')).toBe('./a.vmd.py')
  })

  test('never lets an id end in an extension Vite would read as an asset', () => {
    expect(canonicalId('./a.vmd.py?file=style.css')).toBe('./a.vmd.py?file=style%2Ecss')
    expect(canonicalId('./a.vmd.py?page=x.html&v=1.5')).toBe('./a.vmd.py?page=x%2Ehtml&v=1%2E5')
  })

  test.each(['./a.vmd.py?a=1?raw', './a.vmd.py?a=1#x', './a.vmd.py?raw', './a.vmd.py?', './a.vmd.py?a=\ud800'])(
    '%s stays refused',
    (source) => {
      expect(() => parseId(canonicalId(source))).toThrow(RefusedIdError)
    },
  )
})

describe('parseRequestUrl', () => {
  test('removes only Vite’s own import and t= flags', () => {
    expect(parseRequestUrl('/src/a.vmd.py?type=dog&import&t=1700000000000')).toEqual({ kind: 'root', path: '/src/a.vmd.py', query: 'type=dog', imported: true })
    expect(parseRequestUrl('/@fs/x/a.vmd.py?import')).toEqual({ kind: 'fs', path: '/x/a.vmd.py', query: '', imported: true })
    expect(parseRequestUrl('/src/my%20data.vmd.py')).toEqual({ kind: 'root', path: '/src/my data.vmd.py', query: '', imported: false })
  })

  test.each(['/src/a.vmd.py%3Fraw', '/src%2Fa.vmd.py', '/src/a.vmd.py%23', '/src/a.vmd.py?a=1?raw', '/src/a.vmd.py#x', '/src/../a.vmd.py', '/src/a%25.vmd.py', '/src/a.vmd.py?x=%3f'])(
    'rejects %s',
    (url) => {
      expect(parseRequestUrl(url)).toBeUndefined()
    },
  )

  test('mentionsPython sees through encodings', () => {
    expect(mentionsPython('/src/a.vmd.py?import')).toBe(true)
    expect(mentionsPython('/src/a.vmd%2Epy')).toBe(true)
    expect(mentionsPython('/src/a.vmd%252Epy')).toBe(true)
    expect(mentionsPython('/src/main.js')).toBe(false)
    expect(mentionsPython('/src/a.pyc')).toBe(false)
  })
})
