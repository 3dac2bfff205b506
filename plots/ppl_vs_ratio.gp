# Validation perplexity against the hybrid ratio, from all attention to all linear-time layers,
# one line per setting: the mean over seeds with bars from min to max (settings side by side).
# Files: one per setting: ratio index, mean, min, max, runs. Variables: files, titles, ratios
# (word lists), zoom (the first ratio of a second panel that draws the ratios from it on with its
# own y axis, when the ones before it would squash them; -1: none), keypos, out, fmt, experiment.
load "plots/common.gp"
if (!exists("zoom")) { zoom = -1 }
set xlabel "linear-time : full-attention layers"
set ylabel "validation perplexity (per byte)"
set xtics ()
do for [k=1:words(ratios)] { set xtics add (word(ratios, k) k - 1) }
set offsets 0, 0, graph 0.05, graph 0.05
n = words(files)
title = sprintf("%s: validation perplexity against hybrid ratio (mean over seeds, bars: min to max)", experiment)
if (zoom < 0) {
    set title title noenhanced
    set xrange [-0.5 : words(ratios) - 0.5]
    plot for [i=1:n] word(files, i) using ($1 + (i - (n + 1) / 2.0) * 0.08):2:3:4 with yerrorlines lt i dt dash(i) title word(titles, i)
} else {
    # the legend inside the first panel's upper right, which the ratios past the squashing ones
    # leave empty; the second panel has none
    set multiplot layout 1, 2 title title noenhanced
    set key inside top right box opaque
    set bmargin
    set xrange [-0.5 : words(ratios) - 0.5]
    set title "all ratios"
    plot for [i=1:n] word(files, i) using ($1 + (i - (n + 1) / 2.0) * 0.08):2:3:4 with yerrorlines lt i dt dash(i) title word(titles, i)
    set key off
    set xrange [zoom - 0.5 : words(ratios) - 0.5]
    set title sprintf("from %s on, its own scale", word(ratios, zoom + 1)) noenhanced
    unset ylabel
    plot for [i=1:n] word(files, i) using ($1 + (i - (n + 1) / 2.0) * 0.08):($1 >= zoom ? $2 : NaN):3:4 with yerrorlines lt i dt dash(i) title word(titles, i)
    unset multiplot
}
