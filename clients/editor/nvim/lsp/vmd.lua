-- vmd as a language server, for Neovim 0.11+ (`vim.lsp.config` / `vim.lsp.enable('vmd')`).
-- Older Neovim (0.7-0.10): `require('vmd').setup()` starts the same config itself.
-- The handler and commands forward to the plugin so previews stay live; see
-- clients/editor/README.md. A plain table, read once without a root: it runs python3 from PATH
-- (override `cmd` to pick another); setup() finds the interpreter per root (clients/README.md).
local shared = require('vmd.shared')

return {
  cmd = { 'python3', '-m', 'vmd', 'serve' },
  filetypes = { 'python' },
  root_markers = { 'pyproject.toml', 'package.json', '.git' },
  -- memoryLimitMb is left out: the daemon's default, a quarter of the machine's memory (set it,
  -- in MB, or 0 for no limit, with vim.lsp.config).
  init_options = { include = vim.deepcopy(shared.DEFAULT_INCLUDE), timeoutMs = 30000 },
  handlers = {
    ['vmd/changed'] = function(err, result, ctx, config)
      return require('vmd').on_changed(err, result, ctx, config)
    end,
  },
  commands = {
    ['vmd.preview'] = function(command, ctx)
      return require('vmd').lens_preview(command, ctx)
    end,
  },
}
