# Validation perplexity against evaluation length (length extrapolation), one line per setting:
# the mean over seeds with bars from min to max. Files: one per setting: eval length, mean, min,
# max, runs. Variables: files, titles (word lists), train_len, xspan (the x axis in octaves),
# keypos, out, fmt, experiment.
load "plots/common.gp"
set title sprintf("%s: perplexity against evaluation length (trained at %s; mean over seeds, bars: min to max)", experiment, train_len) noenhanced
set logscale x 2
set xlabel "evaluation length (tokens)"
set ylabel "validation perplexity (per byte)"
set autoscale xfix
set offsets graph 0.04, graph 0.04, graph 0.05, graph 0.05
n = words(files)
plot for [i=1:n] word(files, i) using ($1 * shift(i, n)):2:3:4 with yerrorlines lt i dt dash(i) title word(titles, i)
