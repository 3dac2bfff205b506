# Accuracy of a synthetic task against sequence length, one line per mixer.
# Files: files (one per label: seq_len, mean, spread). Variables: files, titles, task, out, fmt, experiment.
load "plots/common.gp"
set title sprintf("%s: %s accuracy against sequence length", experiment, task) noenhanced
set logscale x 2
set xlabel "sequence length"
set ylabel "accuracy (at the answer positions)"
set yrange [0:1.05]
plot for [i=1:words(files)] word(files, i) using 1:2:3 with yerrorlines title word(titles, i)
