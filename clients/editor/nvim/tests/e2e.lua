-- End to end in real headless Neovim against a real daemon: open a loader, preview it, change a
-- watched file, see the preview update; break the loader, see the diagnostic at its line.
-- Run by tests/e2e/test_nvim_plugin.py with VMD_PROJECT set; exits 0 when every step passed.
-- Every wait is on editor state (vim.wait), never a fixed sleep.
local vmd = require('vmd')
local project = assert(os.getenv('VMD_PROJECT'), 'VMD_PROJECT is not set')
local loader = project .. '/src/users.vmd.py'

local function fail(msg)
  io.stderr:write('FAIL: ' .. msg .. '\n')
  vim.cmd('cquit 1')
end

local function step(name)
  io.stderr:write('step: ' .. name .. '\n')
end

local function wait(what, predicate)
  if not vim.wait(15000, predicate, 10) then
    fail('timed out waiting for ' .. what)
  end
end

local function write(path, text)
  local f = assert(io.open(path, 'w'))
  f:write(text)
  f:close()
end

local function text(bufnr)
  return table.concat(vim.api.nvim_buf_get_lines(bufnr, 0, -1, false), '\n')
end

local ok, err = pcall(function()
  step('open the loader')
  vim.cmd('edit ' .. vim.fn.fnameescape(loader))
  local buf = vim.api.nvim_get_current_buf()
  wait('the vmd client to attach', function()
    local client = vmd.clients(buf)[1]
    return client ~= nil and client.initialized
  end)

  step(':VmdPreview')
  vim.cmd('VmdPreview')
  local preview
  wait('the preview to show the module', function()
    preview = vmd.preview_bufnr(loader)
    return preview ~= nil and text(preview):find('ada', 1, true) ~= nil
  end)
  if vim.bo[preview].filetype ~= 'javascript' then
    fail('preview filetype is ' .. vim.bo[preview].filetype)
  end
  if vim.fn.bufwinid(preview) == -1 then
    fail('the preview is not shown in a window')
  end
  if vim.api.nvim_get_current_buf() ~= buf then
    fail('the cursor left the loader')
  end
  local version = vim.b[preview].vmd_version

  step('change a watched file')
  write(project .. '/src/data/b.csv', 'zed\n')
  wait('the preview to show the new file', function()
    return text(preview):find('zed', 1, true) ~= nil
  end)
  if not (vim.b[preview].vmd_version > version) then
    fail('version did not increase')
  end

  step('a second id of the same loader')
  vim.cmd('VmdPreview ?type=admin')
  wait('the ?type=admin preview', function()
    local b = vmd.preview_bufnr(loader .. '?type=admin')
    return b ~= nil and text(b):find('admin', 1, true) ~= nil
  end)

  step('break the loader')
  write(loader, table.concat({
    'import vmd',
    '',
    'watch = ["data/*.csv"]',
    '',
    'def load(ctx):',
    '    rows = []',
    '    raise RuntimeError("broken on purpose")',
    '',
  }, '\n'))
  local diagnostic
  wait('a diagnostic on the loader', function()
    diagnostic = vim.diagnostic.get(buf)[1]
    return diagnostic ~= nil
  end)
  if diagnostic.lnum ~= 6 then
    fail('diagnostic at line ' .. diagnostic.lnum .. ', expected 6 (0-based)')
  end
  if not diagnostic.message:find('RuntimeError: broken on purpose', 1, true) then
    fail('diagnostic message: ' .. diagnostic.message)
  end
  if diagnostic.severity ~= vim.diagnostic.severity.ERROR then
    fail('diagnostic severity ' .. tostring(diagnostic.severity))
  end
  wait('the preview to show the error', function()
    return text(preview):find('// vmd: ' .. loader .. ' failed', 1, true) ~= nil
  end)

  step('fix the loader')
  write(loader, table.concat({
    'import vmd',
    '',
    'def load(ctx):',
    '    return "export default \'fixed\';"',
    '',
  }, '\n'))
  wait('the diagnostic to clear', function()
    return #vim.diagnostic.get(buf) == 0
  end)
  wait('the preview to show the fixed module', function()
    return text(preview) == "export default 'fixed';"
  end)

  step('code lenses')
  wait('code lenses', function()
    pcall(vim.lsp.codelens.refresh)
    local titles = {}
    for _, lens in ipairs(vim.lsp.codelens.get(buf)) do
      if lens.command then
        titles[lens.command.title] = true
      end
    end
    return titles['Preview module'] and titles['Preview ?type=admin'] and titles['Reload']
  end)

  step(':VmdRestart')
  local old = vmd.clients(buf)[1].id
  vim.cmd('VmdRestart')
  wait('a new client', function()
    local client = vmd.clients(buf)[1]
    return client ~= nil and client.id ~= old and client.initialized
  end)
  write(project .. '/src/users.vmd.py', 'def load(ctx):\n    return "export default 2;"\n')
  wait('the preview to follow the restarted daemon', function()
    return text(preview) == 'export default 2;'
  end)
end)

if not ok then
  fail(tostring(err))
end
io.stderr:write('nvim e2e: all steps passed\n')
vim.cmd('qa!')
