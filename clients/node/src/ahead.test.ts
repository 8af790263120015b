// The rules for using a `vmd/load` answer asked for ahead of Vite: never older than a change
// the daemon has reported since. Pure logic: the daemon's answers are stand-ins here; the dev
// server tests run the same code against a real daemon.
import { describe, expect, test } from 'vitest'
import { AheadLoads } from './ahead.js'
import { DaemonRequestError } from './daemon.js'
import type { LoadResult } from './protocol.js'

const ID = '/app/src/users.vmd.py'
const result = (version: number): LoadResult => ({ id: ID, code: `v${version}`, version, watchFiles: [], dependencies: [] })

function counting(version: number): { load: () => Promise<LoadResult>; calls: () => number } {
  let calls = 0
  return {
    load: () => {
      calls += 1
      return Promise.resolve(result(version))
    },
    calls: () => calls,
  }
}

describe('answers asked ahead', () => {
  test('an answer from a run after the reported change is used once, then Vite asks again', async () => {
    const ahead = new AheadLoads()
    ahead.ask(ID, () => Promise.resolve(result(4)))
    ahead.changed(ID, 3)
    const fallback = counting(9)
    expect((await ahead.take(ID, fallback.load)).version).toBe(4)
    expect(fallback.calls()).toBe(0)
    expect((await ahead.take(ID, fallback.load)).version).toBe(9)
    expect(fallback.calls()).toBe(1)
  })

  test('an answer no newer than the output a later report called stale is asked again', async () => {
    const ahead = new AheadLoads()
    ahead.ask(ID, () => Promise.resolve(result(4)))
    ahead.changed(ID, 4) // reported while the answer was on its way: version 4 is stale
    const fallback = counting(5)
    expect((await ahead.take(ID, fallback.load)).version).toBe(5)
    expect(fallback.calls()).toBe(1)
  })

  test('a report drops an answer that already arrived and asks for a new one', async () => {
    const ahead = new AheadLoads()
    ahead.ask(ID, () => Promise.resolve(result(4)))
    await Promise.resolve()
    await Promise.resolve()
    expect(ahead.changed(ID, 4)).toBe(true)
    const fallback = counting(5)
    expect((await ahead.take(ID, fallback.load)).version).toBe(5)
  })

  test('a report while an answer is still on its way does not ask twice', () => {
    const ahead = new AheadLoads()
    ahead.ask(ID, () => new Promise<LoadResult>(() => undefined))
    expect(ahead.changed(ID, 1)).toBe(false)
  })

  test('a loader error is reused only if no change was reported after it was asked for', async () => {
    const failing = () => Promise.reject(new DaemonRequestError(-32010, 'boom', undefined))
    const ahead = new AheadLoads()
    ahead.ask(ID, failing)
    await expect(ahead.take(ID, counting(1).load)).rejects.toThrow('boom')

    ahead.ask(ID, failing)
    ahead.changed(ID, 1) // the error may predate this change: ask again
    expect((await ahead.take(ID, counting(2).load)).version).toBe(2)
  })

  test('a lost connection is not an answer: the running daemon is asked', async () => {
    const ahead = new AheadLoads()
    ahead.ask(ID, () => Promise.reject(new Error('vmd: the daemon stopped (killed by SIGKILL)')))
    expect((await ahead.take(ID, counting(1).load)).version).toBe(1)
  })

  test('clear forgets answers and reports (a new daemon counts versions from 1 again)', async () => {
    const ahead = new AheadLoads()
    ahead.changed(ID, 40)
    ahead.clear()
    ahead.ask(ID, () => Promise.resolve(result(1)))
    const fallback = counting(2)
    expect((await ahead.take(ID, fallback.load)).version).toBe(1)
    expect(fallback.calls()).toBe(0)
  })
})
