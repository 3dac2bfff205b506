# Shared look of every attnlab figure. Callers set: out (path without extension), fmt (png|svg).
if (fmt eq "svg") {
    set terminal svg size 900,560 dynamic enhanced font "Helvetica,13" background rgb "white"
} else {
    set terminal pngcairo size 900,560 enhanced font "Helvetica,11" background rgb "white"
}
set output out . "." . fmt
set grid lc rgb "#dddddd"
set border lc rgb "#555555"
set key outside right top box lc rgb "#cccccc" noenhanced
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
