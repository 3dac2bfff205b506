# Training loss against step, one line per setting (the runs that differ only in seed): the mean
# over its seeds, and a band from the lowest to the highest seed at each step.
# Files: one per setting: step, mean, min, max, runs that logged the step.
# Variables: files, titles (word lists, same order), keypos, out, fmt, experiment.
load "plots/common.gp"
set title wrapped(sprintf("%s: training loss (line: mean over seeds; band: min to max)", experiment)) noenhanced
set xlabel "step"
set ylabel "training loss (nats per token)"
set style fill transparent solid 0.15 noborder
plot for [i=1:words(files)] word(files, i) using 1:3:4 with filledcurves lt i notitle, \
     for [i=1:words(files)] word(files, i) using 1:2 with lines lt i dt dash(i) lw 2 title word(titles, i)
