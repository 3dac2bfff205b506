# Validation perplexity against the hybrid ratio, from all attention to all linear-time layers,
# one line per setting: the mean over seeds with bars from min to max (settings side by side).
# Files: one per setting: ratio index, mean, min, max, runs. Variables: files, titles, ratios
# (word lists), keypos, out, fmt, experiment.
load "plots/common.gp"
set title sprintf("%s: validation perplexity against hybrid ratio (mean over seeds, bars: min to max)", experiment) noenhanced
set xlabel "linear-time : full-attention layers"
set ylabel "validation perplexity (per byte)"
set xrange [-0.5 : words(ratios) - 0.5]
set xtics ()
do for [k=1:words(ratios)] { set xtics add (word(ratios, k) k - 1) }
set offsets 0, 0, graph 0.05, graph 0.05
n = words(files)
plot for [i=1:n] word(files, i) using ($1 + (i - (n + 1) / 2.0) * 0.08):2:3:4 with yerrorlines lt i dt dash(i) title word(titles, i)
