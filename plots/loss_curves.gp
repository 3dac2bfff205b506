# Training loss against step, one line per run.
# Variables: files, titles (space-separated, same order), out, fmt, experiment.
load "plots/common.gp"
set title sprintf("%s: training loss", experiment) noenhanced
set xlabel "step"
set ylabel "training loss (nats per token)"
set style data lines
plot for [i=1:words(files)] word(files, i) using 1:2 title word(titles, i) lw 1.5
