# Shared look of every attnlab figure. Callers set: out (path without extension), fmt (png|svg),
# keypos (where the legend goes: "outside right ..." or "outside below ...") and keyrows (the
# rows of a legend below the plot, 0 at the right), as attnlab plot does.
if (!exists("keypos")) { keypos = "outside right top vertical"; keyrows = 0 }
H = 560 + 18 * keyrows
if (fmt eq "svg") {
    set terminal svg size 900,H dynamic enhanced font "Helvetica,13" background rgb "white"
} else {
    set terminal pngcairo size 900,H enhanced font "Helvetica,11" background rgb "white"
}
set output out . "." . fmt
set grid lc rgb "#dddddd"
set border lc rgb "#555555"
set key outside right top box lc rgb "#cccccc" noenhanced
eval "set key " . keypos
# room below for the legend (gnuplot's own margin lets it cover the x axis label)
if (keyrows > 0) { set bmargin keyrows + 4 }
set style data linespoints
set linetype 1 lc rgb "#1f77b4" lw 2 pt 7 ps 0.8
set linetype 2 lc rgb "#d62728" lw 2 pt 5 ps 0.8
set linetype 3 lc rgb "#2ca02c" lw 2 pt 9 ps 0.9
set linetype 4 lc rgb "#9467bd" lw 2 pt 11 ps 0.9
set linetype 5 lc rgb "#ff7f0e" lw 2 pt 13 ps 0.9
set linetype 6 lc rgb "#8c564b" lw 2 pt 4 ps 0.8
set linetype 7 lc rgb "#e377c2" lw 2 pt 6 ps 0.8
set linetype 8 lc rgb "#7f7f7f" lw 2 pt 8 ps 0.8
set linetype cycle 8
# Series i is drawn with linetype i (8 colours, then again) and dash pattern dash(i) (5 patterns):
# 40 series differ in colour or dashes, and neighbours in both.
dash(i) = (i - 1) % 5 + 1
# On a log2 x axis xspan octaves wide (set by attnlab plot), series i of n moves by shift(i, n):
# 1.2% of the axis apart, so that the error bars of series at one x stand side by side.
shift(i, n) = 2 ** ((i - (n + 1) / 2.0) * 0.012 * (exists("xspan") && xspan > 0 ? xspan : 1))
# A long title's explanation in brackets on a second line: gnuplot centres a title over the plot,
# not the canvas, so with the legend at the right a long one ran off the canvas's left edge.
wrapped(s) = (strlen(s) > 70 && strstrt(s, " (") > 0) ? s[1:strstrt(s, " (") - 1] . "\n" . s[strstrt(s, " (") + 1:*] : s
