-- What every vmd client agrees on, defined once in clients/README.md and in vmd/protocol.py
-- (tests/unit/test_shared_knowledge.py checks this file against it). Small and free of side
-- effects, so lsp/vmd.lua can read it without loading the plugin.
local M = {}

-- The loader globs when none are given (the daemon's own default).
M.DEFAULT_INCLUDE = { '**/*.vmd.py' }

-- How to install vmd into an interpreter that lacks it: `{python}` is the interpreter,
-- `{checkout}` the path of a vmd checkout (M.INSTALL_CHECKOUT).
M.INSTALL_HINT = 'Install vmd into that interpreter from a checkout of the vmd repository: `{python} -m pip install {checkout}` (vmd is not on PyPI: the "vmd" there is an unrelated project).'
M.INSTALL_CHECKOUT = 'path/to/vmd'

--- M.INSTALL_HINT for `python`.
function M.install_hint(python)
  local hint = M.INSTALL_HINT:gsub('{python}', function()
    return python
  end)
  return (hint:gsub('{checkout}', M.INSTALL_CHECKOUT))
end

return M
