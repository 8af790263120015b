// The plugin as its README's three steps set it up; the interpreter comes from VMD_PYTHON.
import { defineConfig } from 'vite'
import vmd from 'vite-plugin-vmd'

export default defineConfig({
  plugins: [vmd()],
})
