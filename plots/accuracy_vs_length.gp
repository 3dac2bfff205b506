# Accuracy of a synthetic task against sequence length, one line per setting: the mean over seeds
# with bars from min to max, and the task's chance accuracy (when every run has the same).
# Files: files (one per setting: seq_len, mean, min, max, runs). Variables: files, titles (word
# lists), task, chance (0: no line), xspan (the x axis in octaves), keypos, out, fmt,
# experiment.
load "plots/common.gp"
set title wrapped(sprintf("%s: %s accuracy against sequence length (mean over seeds, bars: min to max)", experiment, task)) noenhanced
set logscale x 2
set xlabel "sequence length"
set ylabel "validation accuracy (at the answer positions)"
set yrange [0:1.05]
set autoscale xfix
set offsets graph 0.04, graph 0.04, 0, 0
n = words(files)
plot for [i=1:n] word(files, i) using ($1 * shift(i, n)):2:3:4 with yerrorlines lt i dt dash(i) title word(titles, i), \
     for [k=1:(chance > 0)] chance with lines dt 2 lw 1.5 lc rgb "#333333" title sprintf("chance: 1/%.0f", 1 / chance)
