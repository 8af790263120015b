import { defineConfig } from 'vite'
import vmd from 'vite-plugin-vmd'

export default defineConfig({
  plugins: [vmd()],
})
