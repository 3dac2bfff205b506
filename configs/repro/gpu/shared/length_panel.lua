-- One length's panel of a sweep whose runs each set train.seq_len: the runs at that length alone,
-- under an experiment name of its own (the piece of a grid that a device session can run).
return function(sweep, length, experiment)
  local runs = {}
  for _, r in ipairs(sweep.runs) do
    if r["train.seq_len"] == length then runs[#runs + 1] = r end
  end
  sweep.runs = runs
  sweep.experiment = experiment
  return sweep
end
