# A metric measured at several evaluation lengths (length extrapolation: perplexity, needle
# accuracy), one line per setting: the mean over seeds with bars from min to max (or one line per
# run, each its own setting). Files: one per setting: eval length, mean, min, max, runs. Variables:
# files, titles (word lists), train_len, xspan (the x axis in octaves), what (the title's metric),
# how (what a line is), ylabel, ymax (0: scale the y axis to the data; a share's is fixed, so that
# all zeros still draw), keypos, out, fmt, experiment.
load "plots/common.gp"
set title sprintf("%s: %s against evaluation length\n(trained at %s; %s)", experiment, what, train_len, how) noenhanced
set logscale x 2
set xlabel "evaluation length (tokens)"
set ylabel ylabel
set autoscale xfix
set offsets graph 0.04, graph 0.04, graph 0.05, graph 0.05
if (ymax > 0) { set yrange [0:ymax]; set offsets graph 0.04, graph 0.04, 0, 0 }
n = words(files)
plot for [i=1:n] word(files, i) using ($1 * shift(i, n)):2:3:4 with yerrorlines lt i dt dash(i) title word(titles, i)
