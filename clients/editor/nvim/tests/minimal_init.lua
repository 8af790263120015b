-- Neovim with nothing but this plugin, for the headless end-to-end test.
local here = debug.getinfo(1, 'S').source:sub(2)
local plugin = vim.fn.fnamemodify(here, ':p:h:h')
vim.opt.runtimepath = { plugin, vim.env.VIMRUNTIME }
vim.opt.swapfile = false
vim.opt.shadafile = 'NONE'
vim.cmd('filetype on')
vim.cmd('runtime plugin/vmd.lua')
require('vmd').setup({ python = os.getenv('VMD_PYTHON') })
