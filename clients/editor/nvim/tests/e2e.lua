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

local notices = {}
local notify = vim.notify
vim.notify = function(msg, ...)
  table.insert(notices, msg)
  return notify(msg, ...)
end

local function count(list)
  local n = 0
  for _ in pairs(list) do
    n = n + 1
  end
  return n
end

-- Not in the project: a buffer name Neovim makes absolute against the cwd must not land in it.
vim.cmd('cd /')

local ok, err = pcall(function()
  step('open two loaders of one root at once: one daemon')
  vim.cmd('edit ' .. vim.fn.fnameescape(loader))
  local buf = vim.api.nvim_get_current_buf()
  vim.cmd('split ' .. vim.fn.fnameescape(project .. '/src/other.vmd.py'))
  local other = vim.api.nvim_get_current_buf()
  vim.cmd('wincmd p')
  wait('the vmd client to attach to both', function()
    local client = vmd.clients(buf)[1]
    return client ~= nil and client.initialized and vmd.clients(other)[1] ~= nil
  end)
  if count(vmd.clients()) ~= 1 then
    fail(count(vmd.clients()) .. ' daemons for one root')
  end

  step(':VmdPreview outside a loader says so and starts nothing')
  vim.cmd('enew')
  vim.cmd('VmdPreview')
  if not (notices[#notices] or ''):find('open a loader', 1, true) then
    fail('no notice for :VmdPreview outside a loader: ' .. tostring(notices[#notices]))
  end
  if count(vmd.clients()) ~= 1 then
    fail(':VmdPreview outside a loader started a daemon')
  end
  vim.cmd('buffer ' .. buf)

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

  step('a loader in a second root, previewed')
  local second = project .. '/second/b.vmd.py'
  vim.cmd('split ' .. vim.fn.fnameescape(second))
  vim.cmd('VmdPreview')
  local second_preview
  wait('the second root preview', function()
    second_preview = vmd.preview_bufnr(second)
    return second_preview ~= nil and text(second_preview) == 'export default "b";'
  end)
  vim.cmd('wincmd p')

  step(':VmdRestart')
  local old = vmd.clients(buf)[1].id
  vim.cmd('VmdRestart')
  wait('a new client', function()
    local client = vmd.clients(buf)[1]
    return client ~= nil and client.id ~= old and client.initialized
  end)
  if count(vmd.clients()) ~= 2 then
    fail(count(vmd.clients()) .. ' daemons after a restart, for two roots')
  end
  write(project .. '/src/users.vmd.py', 'def load(ctx):\n    return "export default 2;"\n')
  wait('the preview to follow the restarted daemon', function()
    return text(preview) == 'export default 2;'
  end)
  write(second, 'def load(ctx):\n    return \'export default "b2";\'\n')
  wait("the second root's preview to follow its restarted daemon", function()
    return text(second_preview) == 'export default "b2";'
  end)

  step('include: a loader matching a custom glob starts the daemon')
  vmd.setup({ python = os.getenv('VMD_PYTHON'), include = { '**/*.vmd.py', 'loaders/*.py' } })
  vim.cmd('edit ' .. vim.fn.fnameescape(project .. '/loaders/extra.py'))
  local extra = vim.api.nvim_get_current_buf()
  wait('a client on the custom-glob loader', function()
    return vmd.clients(extra)[1] ~= nil
  end)

  step('memory_limit_mb: sent only when set; a loader going over it previews as a MemoryError')
  if vmd.config(project).init_options.memoryLimitMb ~= nil then
    fail('memoryLimitMb sent without memory_limit_mb set')
  end
  vmd.setup({ memory_limit_mb = 300 })
  if vmd.config(project).init_options.memoryLimitMb ~= 300 then
    fail('memoryLimitMb is ' .. tostring(vmd.config(project).init_options.memoryLimitMb) .. ', expected 300')
  end
  vim.cmd('VmdRestart') -- the running daemons were started without it
  -- Up to 4 GB, 16 MB at a time (line 4), unless the limit stops it first.
  local greedy = project .. '/src/greedy.vmd.py'
  write(greedy, table.concat({
    'def load(ctx):',
    '    held = []',
    '    for _ in range(256):',
    '        held.append(bytearray(16 << 20))',
    '    return "export default 1;"',
    '',
  }, '\n'))
  vim.cmd('edit ' .. vim.fn.fnameescape(greedy))
  vim.cmd('VmdPreview')
  wait('the preview to show the MemoryError at its line', function()
    local b = vmd.preview_bufnr(greedy)
    return b ~= nil
      and text(b):find(greedy .. ':4: MemoryError: the loader went over its memory limit of 300 MB', 1, true) ~= nil
  end)
end)

if not ok then
  fail(tostring(err))
end
io.stderr:write('nvim e2e: all steps passed\n')
vim.cmd('qa!')
