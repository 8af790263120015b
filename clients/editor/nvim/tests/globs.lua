-- The plugin's include matcher (lua/vmd/globs.lua) on every case of tests/fixtures/glob_cases.json.
-- Run by tests/unit/test_globs.py: reads the cases from $VMD_GLOB_CASES, writes what the matcher
-- answers for each, in order, as a JSON list to $VMD_GLOB_RESULTS; the test compares them with
-- the expected answers (vmd/globs.py's), case by case.
local ok, err = pcall(function()
  local globs = require('vmd.globs')
  local fixture = vim.fn.json_decode(table.concat(vim.fn.readfile(os.getenv('VMD_GLOB_CASES')), '\n'))
  local root = '/root'
  local answers = {}
  for _, case in ipairs(fixture.cases) do
    table.insert(answers, globs.included({ case.pattern }, root, root .. '/' .. case.path))
  end
  vim.fn.writefile({ vim.fn.json_encode(answers) }, os.getenv('VMD_GLOB_RESULTS'))
end)
if not ok then
  io.stderr:write('FAIL: ' .. tostring(err) .. '\n')
  vim.cmd('cquit 1')
end
vim.cmd('qa!')
