-- Include-glob matching, ported from vmd/globs.py so that a buffer is a loader here exactly when
-- the daemon would run it. vmd/globs.py is the reference: tests/fixtures/glob_cases.json holds
-- cases both are checked against (tests/unit/test_globs.py).
--
-- As there: a pattern is joined to its folder and normalised (`./`, `..`, `//` and a trailing
-- `/` go), then matched against a whole absolute path. `*` and `?` never match `/`, `[...]` is
-- a character class (`!` or `^` negates), a `**` component matches zero or more folders (as the
-- last component, anything below), and `**` inside a component is two `*`. Pure Lua, not Vim
-- regexes, so 'ignorecase' and regex dialects cannot change the answer; characters are UTF-8
-- code points, as Python's are.

local M = {}

local windows = package.config:sub(1, 1) == '\\'

-- posixpath.normpath.
local function normpath(path)
  if path == '' then
    return '.'
  end
  local initial = path:match('^/*')
  if #initial ~= 2 then
    initial = initial:sub(1, 1)
  end
  local parts = {}
  for part in path:gmatch('[^/]+') do
    if part == '..' then
      if #parts > 0 and parts[#parts] ~= '..' then
        table.remove(parts)
      elseif initial == '' then
        table.insert(parts, part)
      end
    elseif part ~= '.' then
      table.insert(parts, part)
    end
  end
  local out = initial .. table.concat(parts, '/')
  return out == '' and '.' or out
end

--- `pattern` joined to `folder` and normalised (globs.absolute).
function M.absolute(pattern, folder)
  if windows then
    pattern = pattern:gsub('\\', '/')
  end
  local joined = pattern
  if pattern:sub(1, 1) ~= '/' then
    joined = folder:sub(-1) == '/' and folder .. pattern or folder .. '/' .. pattern
  end
  return normpath(joined)
end

-- The UTF-8 character starting at byte `i` of `s`: its code point and the byte after it.
local function char_at(s, i)
  local b = s:byte(i)
  if not b then
    return nil, i
  end
  local n = b < 0x80 and 1 or b < 0xE0 and 2 or b < 0xF0 and 3 or 4
  if n == 1 then
    return b, i + 1
  end
  local code = b % (2 ^ (7 - n))
  for k = i + 1, i + n - 1 do
    code = code * 64 + ((s:byte(k) or 0x80) % 64)
  end
  return code, i + n
end

local SLASH = 47

-- `[...]` with its body (between the brackets): what globs.py hands to Python's `re`.
local function class(body)
  local negate = false
  local first = body:sub(1, 1)
  if first == '!' or first == '^' then
    negate = true
    body = body:sub(2)
  end
  local chars = {}
  local i = 1
  while i <= #body do
    local code
    code, i = char_at(body, i)
    table.insert(chars, code)
  end
  local ranges = {}
  local k = 1
  while k <= #chars do
    if chars[k + 1] == 45 and chars[k + 2] then -- `a-z`; a `-` first or last is itself
      table.insert(ranges, { chars[k], chars[k + 2] })
      k = k + 3
    else
      table.insert(ranges, { chars[k], chars[k] })
      k = k + 1
    end
  end
  return { kind = 'class', negate = negate, ranges = ranges }
end

-- One component (no `/`), as globs.py's `_translate_part`: tokens appended to `out`.
local function translate_part(part, out)
  local literal = {}
  local function flush()
    if #literal > 0 then
      table.insert(out, { kind = 'text', text = table.concat(literal) })
      literal = {}
    end
  end
  local i, n = 1, #part
  while i <= n do
    local c = part:sub(i, i)
    i = i + 1
    if c == '*' then
      flush()
      table.insert(out, { kind = 'star' })
    elseif c == '?' then
      flush()
      table.insert(out, { kind = 'one' })
    elseif c == '[' then
      local from = (i <= n and part:sub(i, i):match('[!^]')) and i + 1 or i
      if from <= n and part:sub(from, from) == ']' then
        from = from + 1 -- a `]` first is a member, as in fnmatch
      end
      local close = part:find(']', from, true)
      if close then
        flush()
        table.insert(out, class(part:sub(i, close - 1)))
        i = close + 1
      else
        table.insert(literal, c)
      end
    else
      table.insert(literal, c)
    end
  end
  flush()
end

-- Python's `str.split('/')`: empty components are kept.
local function split(pattern)
  local parts, from = {}, 1
  while true do
    local at = pattern:find('/', from, true)
    if not at then
      table.insert(parts, pattern:sub(from))
      return parts
    end
    table.insert(parts, pattern:sub(from, at - 1))
    from = at + 1
  end
end

-- An absolute pattern as tokens (globs.compile): `text`, `star` ([^/]*), `one` ([^/]),
-- `class`, `folders` ((?:[^/]+/)*, a `**` component) and `rest` (.*, a last `**`).
local compiled = {}
local function compile(pattern)
  if compiled[pattern] then
    return compiled[pattern]
  end
  local parts = split(pattern)
  local tokens = {}
  for i, part in ipairs(parts) do
    local last = i == #parts
    if part == '**' then
      table.insert(tokens, { kind = last and 'rest' or 'folders' })
    else
      translate_part(part, tokens)
      if not last then
        table.insert(tokens, { kind = 'text', text = '/' })
      end
    end
  end
  compiled[pattern] = tokens
  return tokens
end

local function in_class(token, code)
  if token.negate and code == SLASH then
    return false -- a negated class never matches `/`, just as `*` and `?` never do
  end
  local inside = false
  for _, range in ipairs(token.ranges) do
    if code >= range[1] and code <= range[2] then
      inside = true
      break
    end
  end
  return inside ~= token.negate
end

-- Whether tokens[t..] match path[p..] to its end; `seen` remembers failures (no blow-up on
-- many stars).
local function match_from(tokens, path, t, p, seen)
  local key = t * (#path + 2) + p
  if seen[key] then
    return false
  end
  local token = tokens[t]
  local ok
  if not token then
    ok = p == #path + 1
  elseif token.kind == 'text' then
    ok = path:sub(p, p + #token.text - 1) == token.text and match_from(tokens, path, t + 1, p + #token.text, seen)
  elseif token.kind == 'rest' then
    ok = match_from(tokens, path, t + 1, #path + 1, seen)
  elseif token.kind == 'folders' then
    -- No folder, or one whole (non-empty) folder and then this token again.
    local slash = path:find('/', p, true)
    ok = match_from(tokens, path, t + 1, p, seen)
      or (slash ~= nil and slash > p and match_from(tokens, path, t, slash + 1, seen))
  else
    local code, after = char_at(path, p)
    if token.kind == 'star' then
      ok = match_from(tokens, path, t + 1, p, seen)
        or (code ~= nil and code ~= SLASH and match_from(tokens, path, t, after, seen))
    elseif token.kind == 'one' then
      ok = code ~= nil and code ~= SLASH and match_from(tokens, path, t + 1, after, seen)
    else -- class: a negated one may match `/`, as in globs.py
      ok = code ~= nil and in_class(token, code) and match_from(tokens, path, t + 1, after, seen)
    end
  end
  if not ok then
    seen[key] = true
  end
  return ok
end

--- Whether absolute `path` is matched by absolute `pattern` (globs.matches).
function M.matches(pattern, path)
  return match_from(compile(pattern), path, 1, 1, {})
end

--- Whether absolute `path` is one of the loaders `include` (globs relative to `root`) names, as
--- the daemon decides it (vmd/confine.py).
function M.included(include, root, path)
  for _, glob in ipairs(include) do
    if M.matches(M.absolute(glob, root), path) then
      return true
    end
  end
  return false
end

return M
