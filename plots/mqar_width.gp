# MQAR accuracy against model width, one panel per sequence length (and number of key-value
# pairs), one line per setting (the Zoology figure): the mean over seeds with bars from min to
# max, and the chance accuracy. Files: datadir/mqar_T<len>_P<pairs>_<label>.dat with columns
# d_model, mean, min, max, runs. Variables: datadir, lengths and pairs (one word per panel),
# labels (word list), chance (0: no line), xspan (the x axis in octaves), keypos, out, fmt,
# experiment.
load "plots/common.gp"
n = words(lengths)
W = 360 * n + 310
H = 440 + 18 * keyrows
if (fmt eq "svg") {
    set terminal svg size W,H dynamic enhanced font "Helvetica,13" background rgb "white"
} else {
    set terminal pngcairo size W,H enhanced font "Helvetica,11" background rgb "white"
}
set output out . "." . fmt
set multiplot title sprintf("%s: MQAR accuracy against width (mean over seeds, bars: min to max)", experiment) noenhanced
set logscale x 2
set xlabel "d\\_model"
set yrange [0:1.05]
set autoscale xfix
set offsets graph 0.04, graph 0.04, 0, 0
m = words(labels)
do for [p=1:n] {
    call "plots/panels.gp" p n
    set title sprintf("length %s, %s key-value pairs", word(lengths, p), word(pairs, p))
    if (p == 1) { set ylabel "accuracy" } else { unset ylabel }
    plot for [i=1:m] sprintf("%s/mqar_T%s_P%s_%s.dat", datadir, word(lengths, p), word(pairs, p), word(labels, i)) \
        using ($1 * shift(i, m)):2:3:4 with yerrorlines lt i dt dash(i) title word(labels, i), \
        for [k=1:(chance > 0)] chance with lines dt 2 lw 1.5 lc rgb "#333333" title sprintf("chance: 1/%.0f", 1 / chance)
}
unset multiplot
