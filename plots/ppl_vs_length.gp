# Validation perplexity against evaluation length (length extrapolation), one line per variant.
# Files: one per label: eval length, mean, spread. Variables: files, titles, train_len, out, fmt, experiment.
load "plots/common.gp"
set title sprintf("%s: perplexity against evaluation length (trained at %s)", experiment, train_len) noenhanced
set logscale x 2
set xlabel "evaluation length (tokens)"
set ylabel "validation perplexity (per byte)"
plot for [i=1:words(files)] word(files, i) using 1:2:3 with yerrorlines title word(titles, i)
