-- vmd for Neovim: starts `python -m vmd serve` as a language server for *.vmd.py buffers and
-- keeps scratch buffers with the modules they generate up to date.
--
-- Works on Neovim 0.7 (Debian's package) and newer. Newer APIs are feature-detected, never
-- assumed: vim.lsp.start (0.8), vim.lsp.get_clients (0.10), client:request (0.11).
-- Neovim has no LSP 3.18 textDocumentContent, so previews use vmd's own protocol: `vmd/load`
-- fetches a module, and the `vmd/changed` notification says when to fetch it again.

local globs = require('vmd.globs')
local shared = require('vmd.shared')

local M = {}

local uv = vim.uv or vim.loop
local api = vim.api

M.options = {
  python = nil, -- nil: $VMD_PYTHON, else the nearest .venv from the root up, else python3
  include = vim.deepcopy(shared.DEFAULT_INCLUDE),
  timeout_ms = 30000,
  -- Each loader process's memory limit in MB; 0: none. nil: the daemon's default, a quarter of
  -- the machine's (or container's) memory.
  memory_limit_mb = nil,
  root_markers = { 'pyproject.toml', 'package.json', '.git' },
  autostart = true,
  codelens = true,
}

-- module id -> { bufnr, seq, version }: the preview buffers, refreshed on vmd/changed.
local previews = {}
-- root -> client id of the daemon started for it (0.7 lists a client only once initialized,
-- so a second loader opened meanwhile would otherwise start a second daemon).
local started = {}
-- client ids stopped on purpose (restart, quit): their exit is not an error to report.
local stopping = {}

local function has(version)
  return vim.fn.has('nvim-' .. version) == 1
end

local function notify(msg, level)
  vim.notify('vmd: ' .. msg, level or vim.log.levels.INFO)
end

--- The vmd clients, optionally only those attached to `bufnr`.
function M.clients(bufnr)
  local out = {}
  if vim.lsp.get_clients then
    return vim.lsp.get_clients({ name = 'vmd', bufnr = bufnr })
  end
  local all = bufnr and vim.lsp.buf_get_clients(bufnr) or vim.lsp.get_active_clients()
  for _, client in pairs(all) do
    if client.name == 'vmd' then
      table.insert(out, client)
    end
  end
  return out
end

-- Client methods became `client:method()` in 0.11; before, they were plain functions.
local function request(client, method, params, handler)
  if has('0.11') then
    return client:request(method, params, handler)
  end
  return client.request(method, params, handler)
end

local function is_stopped(client)
  if has('0.11') then
    return client:is_stopped()
  end
  return client.is_stopped()
end

local function stop(client)
  if has('0.11') then
    return client:stop()
  end
  return client.stop()
end

local function find_root(path)
  local dir = vim.fn.fnamemodify(path, ':p:h')
  while true do
    for _, marker in ipairs(M.options.root_markers) do
      if uv.fs_stat(dir .. '/' .. marker) then
        return dir
      end
    end
    local parent = vim.fn.fnamemodify(dir, ':h')
    if parent == dir then
      return vim.fn.fnamemodify(path, ':p:h')
    end
    dir = parent
  end
end

-- The interpreter, found as every vmd client finds it (clients/README.md): the `python`
-- option, else $VMD_PYTHON, else the nearest .venv from the root up, else python3 (python on
-- Windows).
local function python_for(root)
  if M.options.python and M.options.python ~= '' then
    return M.options.python
  end
  if vim.env.VMD_PYTHON and vim.env.VMD_PYTHON ~= '' then
    return vim.env.VMD_PYTHON
  end
  local windows = vim.fn.has('win32') == 1
  local dir = root
  while true do
    local venv = dir .. (windows and '/.venv/Scripts/python.exe' or '/.venv/bin/python')
    if uv.fs_stat(venv) then
      return venv
    end
    local parent = vim.fn.fnamemodify(dir, ':h')
    if parent == dir then
      return windows and 'python' or 'python3'
    end
    dir = parent
  end
end

-- Why the daemon died, in words a user can act on.
local function explain_exit(python, code)
  if vim.fn.executable(python) ~= 1 then
    return ('Python interpreter %q not found. Set it with require("vmd").setup({ python = "..." }).')
      :format(python)
  end
  -- vmd.cli, not vmd: the "vmd" on PyPI is an unrelated package.
  vim.fn.system({ python, '-c', 'import vmd.cli' })
  if vim.v.shell_error ~= 0 then
    return ('vmd is not installed for %s. %s Or set another with require("vmd").setup({ python = "..." }).')
      :format(python, shared.install_hint(python))
  end
  return ('the daemon exited with code %d; see :LspLog.'):format(code)
end

--- The client config for a workspace root (the same shape as lsp/vmd.lua).
function M.config(root)
  local python = python_for(root)
  return {
    name = 'vmd',
    cmd = { python, '-m', 'vmd', 'serve' },
    root_dir = root,
    workspace_folders = { { uri = vim.uri_from_fname(root), name = root } },
    -- A nil memory_limit_mb leaves memoryLimitMb out, so the daemon uses its default.
    init_options = {
      include = M.options.include,
      timeoutMs = M.options.timeout_ms,
      memoryLimitMb = M.options.memory_limit_mb,
    },
    handlers = { ['vmd/changed'] = M.on_changed },
    commands = { ['vmd.preview'] = M.lens_preview },
    on_exit = function(code, _, client_id)
      if stopping[client_id] then
        stopping[client_id] = nil
      elseif code ~= 0 then
        vim.schedule(function()
          notify(explain_exit(python, code), vim.log.levels.ERROR)
        end)
      end
    end,
  }
end

-- A file buffer whose path matches the `include` globs, relative to its workspace root, as the
-- daemon matches them (not a preview: those are named after the loader but are no files).
local function is_loader(bufnr)
  if vim.bo[bufnr].buftype ~= '' then
    return false
  end
  local name = api.nvim_buf_get_name(bufnr)
  if name == '' then
    return false
  end
  local path = vim.fn.fnamemodify(name, ':p')
  return globs.included(M.options.include, find_root(path), path)
end

--- Start (or reuse) the daemon for `bufnr`'s workspace and attach it; returns the client id.
function M.start(bufnr)
  bufnr = bufnr or api.nvim_get_current_buf()
  local path = vim.fn.fnamemodify(api.nvim_buf_get_name(bufnr), ':p')
  if path == '' then
    return nil
  end
  local root = find_root(path)
  local config = M.config(root)
  if vim.fn.executable(config.cmd[1]) ~= 1 then
    notify(explain_exit(config.cmd[1], 1), vim.log.levels.ERROR)
    return nil
  end
  if vim.lsp.start then -- 0.8+: reuses a client with the same name and root
    return vim.lsp.start(config, { bufnr = bufnr })
  end
  local known = started[root] and vim.lsp.get_client_by_id(started[root])
  if known and not is_stopped(known) then
    vim.lsp.buf_attach_client(bufnr, known.id)
    return known.id
  end
  for _, client in ipairs(M.clients()) do
    if client.config.root_dir == root and not is_stopped(client) then
      vim.lsp.buf_attach_client(bufnr, client.id)
      return client.id
    end
  end
  local id = vim.lsp.start_client(config)
  if id then
    started[root] = id
    vim.lsp.buf_attach_client(bufnr, id)
  end
  return id
end

local function client_for(bufnr)
  local client = M.clients(bufnr)[1] or M.clients()[1]
  if not client then
    local id = M.start(bufnr)
    client = id and vim.lsp.get_client_by_id(id)
  end
  if client and not client.initialized then
    vim.wait(10000, function()
      return client.initialized or is_stopped(client)
    end, 10)
  end
  return client
end

-- What a preview shows while its loader fails (the daemon's vmd: documents say the same).
local function error_text(id, err)
  local data = type(err.data) == 'table' and err.data or {}
  local lines = {
    ('// vmd: %s failed (%s)'):format(id, data.kind or 'error'),
    ('// %s:%s: %s'):format(data.file or id, data.line or 1, data.message or err.message or ''),
  }
  if data.traceback and data.traceback ~= '' then
    table.insert(lines, '//')
    for _, line in ipairs(vim.split(vim.trim(data.traceback), '\n')) do
      table.insert(lines, (('// ' .. line):gsub('%s+$', '')))
    end
  end
  return lines
end

local function set_text(bufnr, lines)
  vim.bo[bufnr].modifiable = true
  api.nvim_buf_set_lines(bufnr, 0, -1, false, lines)
  vim.bo[bufnr].modifiable = false
  vim.bo[bufnr].modified = false
end

-- Fetch `id` and show it; a reply to an older fetch than the latest is dropped.
local function fetch(client, id)
  local preview = previews[id]
  if not preview then
    return
  end
  preview.seq = preview.seq + 1
  local seq = preview.seq
  request(client, 'vmd/load', { id = id }, function(err, result)
    if preview.seq ~= seq or not api.nvim_buf_is_valid(preview.bufnr) then
      return
    end
    if err then
      set_text(preview.bufnr, error_text(id, err))
      preview.version = -1
    else
      local lines = vim.split(result.code, '\n', { plain = true })
      if lines[#lines] == '' then
        table.remove(lines)
      end
      set_text(preview.bufnr, lines)
      preview.version = result.version
    end
    api.nvim_buf_set_var(preview.bufnr, 'vmd_version', preview.version)
  end)
end

local function preview_buffer(id)
  local preview = previews[id]
  if preview and api.nvim_buf_is_valid(preview.bufnr) then
    return preview
  end
  local bufnr = api.nvim_create_buf(false, true)
  api.nvim_buf_set_name(bufnr, 'vmd:' .. id)
  vim.bo[bufnr].buftype = 'nofile'
  vim.bo[bufnr].bufhidden = 'hide'
  vim.bo[bufnr].swapfile = false
  vim.bo[bufnr].modifiable = false
  vim.bo[bufnr].filetype = 'javascript'
  api.nvim_buf_set_var(bufnr, 'vmd_id', id)
  preview = { bufnr = bufnr, seq = 0, version = nil }
  previews[id] = preview
  return preview
end

--- The buffer number of the preview of `id`, if one is open.
function M.preview_bufnr(id)
  local preview = previews[id]
  return preview and api.nvim_buf_is_valid(preview.bufnr) and preview.bufnr or nil
end

local function open(client, id)
  local preview = preview_buffer(id)
  if vim.fn.bufwinid(preview.bufnr) == -1 then
    local win = api.nvim_get_current_win()
    vim.cmd('vertical rightbelow sbuffer ' .. preview.bufnr)
    api.nvim_set_current_win(win) -- the preview sits beside; the loader keeps the cursor
  end
  fetch(client, id)
  return preview.bufnr
end

-- The module id a command means: `arg` may be an id, a `?query`, or a bare query.
local function id_for(bufnr, arg)
  local ok, current = pcall(api.nvim_buf_get_var, bufnr, 'vmd_id')
  local base = ok and current:gsub('%?.*$', '') or vim.fn.fnamemodify(api.nvim_buf_get_name(bufnr), ':p')
  if not arg then
    return ok and current or base
  end
  if arg:sub(1, 1) == '/' then
    return arg
  end
  if arg:sub(1, 1) == '?' then
    return base .. arg
  end
  return base .. '?' .. arg
end

--- :VmdPreview [query|id]: open the generated module beside the loader, kept up to date.
-- Whether `bufnr` can name a module for a command with `arg`: a loader or a preview, or an
-- absolute id given outright. Says what to do instead when not.
local function names_a_module(bufnr, arg)
  if is_loader(bufnr) or pcall(api.nvim_buf_get_var, bufnr, 'vmd_id') or (arg and arg:sub(1, 1) == '/') then
    return true
  end
  notify(('open a loader (%s) or its preview first'):format(table.concat(M.options.include, ', ')),
    vim.log.levels.WARN)
  return false
end

function M.preview(arg)
  local bufnr = api.nvim_get_current_buf()
  if not names_a_module(bufnr, arg) then
    return nil
  end
  local id = id_for(bufnr, arg)
  local client = client_for(bufnr)
  if not client then
    notify('no vmd daemon for this buffer', vim.log.levels.ERROR)
    return nil
  end
  return open(client, id)
end

--- :VmdReload: re-run the current loader (every id this daemon knows for it).
function M.reload()
  local bufnr = api.nvim_get_current_buf()
  if not names_a_module(bufnr) then
    return
  end
  local client = client_for(bufnr)
  if client then
    local command = { command = 'vmd.reload', arguments = { id_for(bufnr) } }
    request(client, 'workspace/executeCommand', command, function(err)
      if err then
        notify(err.message, vim.log.levels.ERROR)
      end
    end)
  end
end

--- :VmdRestart: stop the daemons and start them again for every open loader.
function M.restart()
  local ids = {}
  for _, client in ipairs(M.clients()) do
    stopping[client.id] = true
    table.insert(ids, client.id)
    stop(client)
  end
  vim.wait(5000, function()
    for _, id in ipairs(ids) do
      local client = vim.lsp.get_client_by_id(id)
      if client and not is_stopped(client) then
        return false
      end
    end
    return true
  end, 20)
  local by_root = {}
  for _, bufnr in ipairs(api.nvim_list_bufs()) do
    if api.nvim_buf_is_loaded(bufnr) and is_loader(bufnr) then
      local id = M.start(bufnr)
      local client = id and vim.lsp.get_client_by_id(id)
      if client then
        by_root[client.config.root_dir] = client
      end
    end
  end
  for _, client in pairs(by_root) do
    vim.wait(10000, function()
      return client.initialized or is_stopped(client)
    end, 10)
  end
  -- Each preview from the daemon of its own root (the others refuse ids outside theirs).
  for id in pairs(previews) do
    local client = by_root[find_root((id:gsub('%?.*$', '')))]
    if client then
      fetch(client, id)
    end
  end
end

--- Handler for the daemon's `vmd/changed` notification: refetch that preview.
function M.on_changed(_, result, ctx)
  if result and previews[result.id] then
    local client = vim.lsp.get_client_by_id(ctx.client_id)
    if client then
      fetch(client, result.id)
    end
  end
end

--- Client-side handler for the "Preview" code lens (its argument is the module id).
function M.lens_preview(command, ctx)
  local client = vim.lsp.get_client_by_id(ctx.client_id)
  local id = command.arguments and command.arguments[1]
  if client and type(id) == 'string' then
    open(client, id)
  end
end

--- Configure, and start the daemon for loader buffers (open now and later).
function M.setup(opts)
  M.options = vim.tbl_deep_extend('force', M.options, opts or {})
  local group = api.nvim_create_augroup('vmd', { clear = true })
  if M.options.autostart then
    api.nvim_create_autocmd('FileType', {
      group = group,
      pattern = 'python',
      callback = function(args)
        if is_loader(args.buf) then
          M.start(args.buf)
        end
      end,
    })
    for _, bufnr in ipairs(api.nvim_list_bufs()) do
      if api.nvim_buf_is_loaded(bufnr) and is_loader(bufnr) then
        M.start(bufnr)
      end
    end
  end
  if M.options.codelens then
    api.nvim_create_autocmd({ 'BufEnter', 'BufWritePost', 'InsertLeave', 'CursorHold' }, {
      group = group,
      callback = function(args)
        if is_loader(args.buf) and #M.clients(args.buf) > 0 then
          pcall(vim.lsp.codelens.refresh, has('0.10') and { bufnr = args.buf } or nil)
        end
      end,
    })
  end
end

return M
