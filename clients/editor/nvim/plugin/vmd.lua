-- Commands only; the real work is in lua/vmd, loaded on first use.
if vim.g.loaded_vmd then
  return
end
vim.g.loaded_vmd = true

vim.api.nvim_create_user_command('VmdPreview', function(opts)
  require('vmd').preview(opts.args ~= '' and opts.args or nil)
end, { nargs = '?', desc = 'vmd: open the module this loader generates (arg: ?query or an id)' })

vim.api.nvim_create_user_command('VmdReload', function()
  require('vmd').reload()
end, { desc = 'vmd: re-run the loader of the current buffer' })

vim.api.nvim_create_user_command('VmdRestart', function()
  require('vmd').restart()
end, { desc = 'vmd: restart the daemon' })
