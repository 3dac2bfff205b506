-- only(runs, keep): the runs of a sweep's list for which keep(run) holds, in order (the examples
-- here keep a few of a reproduction's runs).
return function(runs, keep)
  local kept = {}
  for _, r in ipairs(runs) do
    if keep(r) then kept[#kept + 1] = r end
  end
  return kept
end
