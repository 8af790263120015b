import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

const python = fileURLToPath(new URL('../../.venv/bin/python', import.meta.url))

// Every test runs against a real daemon and a real Vite: the newest major (8) and the
// previous one (7, installed as `vite7` and aliased to `vite` in its project).
export default defineConfig({
  test: {
    env: { VMD_PYTHON: process.env.VMD_PYTHON ?? python },
    testTimeout: 30_000,
    hookTimeout: 30_000,
    globalSetup: ['./src/test/global-setup.ts'],
    projects: [
      {
        extends: true,
        test: { name: 'vite8', include: ['src/**/*.test.ts'], env: { VMD_VITE_MAJOR: '8' } },
      },
      {
        extends: true,
        resolve: { alias: { vite: 'vite7' } },
        test: { name: 'vite7', env: { VMD_VITE_MAJOR: '7' }, include: ['src/**/*.test.ts'], exclude: ['src/**/*.browser.test.ts', 'src/ids.test.ts', 'src/daemon.test.ts', 'src/ahead.test.ts', 'src/options.test.ts', 'src/client-types.test.ts'] },
      },
    ],
  },
})
