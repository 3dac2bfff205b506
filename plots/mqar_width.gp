# MQAR accuracy against model width, one panel per sequence length (and number of key-value
# pairs), one line per mixer (the Zoology figure). Files: datadir/mqar_T<len>_P<pairs>_<label>.dat
# with columns d_model, mean, spread. Variables: datadir, lengths and pairs (one word per panel),
# labels, out, fmt, experiment.
load "plots/common.gp"
n = words(lengths)
set terminal pngcairo size 380*n+160,420 enhanced font "Helvetica,11" background rgb "white"
if (fmt eq "svg") { set terminal svg size 380*n+160,420 dynamic enhanced font "Helvetica,13" background rgb "white" }
set output out . "." . fmt
set multiplot layout 1,n title sprintf("%s: MQAR accuracy against width", experiment) noenhanced
set logscale x 2
set xlabel "d\\_model"
set yrange [0:1.05]
do for [p=1:n] {
    set title sprintf("length %s, %s key-value pairs", word(lengths, p), word(pairs, p))
    if (p == 1) { set ylabel "accuracy" } else { unset ylabel }
    if (p == n) { set key outside right top } else { unset key }
    plot for [i=1:words(labels)] sprintf("%s/mqar_T%s_P%s_%s.dat", datadir, word(lengths, p), word(pairs, p), word(labels, i)) \
        using 1:2:3 with yerrorlines title word(labels, i)
}
unset multiplot
