# Validation perplexity against the hybrid ratio, from all attention to all linear-time layers,
# one line per setting: the mean over seeds with bars from min to max (settings side by side).
# Files: one per setting: ratio index, mean, min, max, runs. Variables: files, titles, ratios
# (word lists), zoom (the first ratio of a second panel that draws the ratios from it on with its
# own y axis, where the ones before it would squash them; -1: none), keypos, out, fmt, experiment.
load "plots/common.gp"
if (!exists("zoom")) { zoom = -1 }
set xlabel "linear-time : full-attention layers"
set ylabel "validation perplexity (per byte)"
set xtics ()
do for [k=1:words(ratios)] { set xtics add (word(ratios, k) k - 1) }
set offsets 0, 0, graph 0.05, graph 0.05
nf = words(files) # (panels.gp sets n)
title = sprintf("%s: validation perplexity against hybrid ratio (mean over seeds, bars: min to max)", experiment)
if (zoom < 0) {
    set title title noenhanced
    set xrange [-0.5 : words(ratios) - 0.5]
    plot for [i=1:nf] word(files, i) using ($1 + (i - (nf + 1) / 2.0) * 0.08):2:3:4 with yerrorlines lt i dt dash(i) title word(titles, i)
} else {
    W = 1250
    key_strip = 320 # settings' names run longer than efficiency's models'
    H = 480 + 18 * keyrows
    if (fmt eq "svg") {
        set terminal svg size W,H dynamic enhanced font "Helvetica,13" background rgb "white"
    } else {
        set terminal pngcairo size W,H enhanced font "Helvetica,11" background rgb "white"
    }
    set output out . "." . fmt
    set multiplot title title noenhanced
    call "plots/panels.gp" 1 2
    set xrange [-0.5 : words(ratios) - 0.5]
    set title "all ratios"
    plot for [i=1:nf] word(files, i) using ($1 + (i - (nf + 1) / 2.0) * 0.08):2:3:4 with yerrorlines lt i dt dash(i) title word(titles, i)
    call "plots/panels.gp" 2 2 "ylabel"
    set xrange [zoom - 0.5 : words(ratios) - 0.5]
    set title sprintf("from %s on, its own scale", word(ratios, zoom + 1)) noenhanced
    unset clip one # no segment toward the ratios left of the panel (nor do they scale its y axis)
    plot for [i=1:nf] word(files, i) using ($1 + (i - (nf + 1) / 2.0) * 0.08):2:3:4 with yerrorlines lt i dt dash(i) title word(titles, i)
    unset multiplot
}
