# The final metric of each setting, a row each: the mean over its finished seeds (filled circle)
# with a bar from min to max and an open circle per seed; a dashed line at the task's chance
# accuracy (a uniform guess among the answers); after a sweep's `select`, the row names the
# chosen value and a grey mark per other value tried shows its mean over seeds.
# Files: file (row, "setting", mean, min, max, seeds finished, seeds run, chance), seeds (row,
# value), cands (row, mean, number of the value in candidates; the chosen one left out).
# Variables: file, seeds, cands, candidates and rownames (word lists), metric, task, goal,
# chance_title ('' for none), accuracy (1: the axis is [0, 1]), selection (how the chosen values
# were chosen; '' without select), keypos, out, fmt, experiment.
load "plots/common.gp"
rows = words(rownames)
longest = 0
do for [k=1:rows] { longest = strlen(word(rownames, k)) > longest ? strlen(word(rownames, k)) : longest }
# wide enough for the row names and a plot of 700 pixels, high enough for the rows and the legend
w = 780 + 8 * longest
h = 170 + 30 * rows + 18 * keyrows
if (fmt eq "svg") {
    set terminal svg size w,h dynamic enhanced font "Helvetica,13" background rgb "white"
} else {
    set terminal pngcairo size w,h enhanced font "Helvetica,11" background rgb "white"
}
set output out . "." . fmt
set title sprintf("%s: final %s per setting (%s)%s", experiment, metric, task, selection eq "" ? "" : "\n" . selection) noenhanced
set xlabel sprintf("%s (%s)", metric, goal) noenhanced
set yrange [rows - 0.5 : -0.5]
set ytics scale 0 noenhanced ()
do for [k=1:rows] { set ytics add (word(rownames, k) k - 1) }
set grid xtics noytics
if (accuracy) { set xrange [0:1] } else { set offsets graph 0.05, graph 0.05, 0, 0 }
cand_pt = "2 1 12 4 8 10 3 14"
# built as a string: gnuplot 5.4 opens the file of an empty `plot for` iteration
cmd = 'plot file using 3:1:4:5 with xerrorbars lt 1 pt 7 ps 1.5 lw 2 title "mean over seeds, bar: min to max", ' . \
      'seeds using 2:1 with points lt 1 pt 6 ps 1.1 title "each seed"'
if (strlen(chance_title) > 0) {
    cmd = cmd . ', file using ($8 > 0 ? $8 : NaN):($1 - 0.5):(0):(1) with vectors nohead dt 2 lw 2 lc rgb "#333333" title chance_title'
}
if (words(candidates) > 0) {
    cmd = cmd . ', for [c=1:words(candidates)] cands using ($3 == c ? $2 : NaN):1 with points ' . \
          'pt (word(cand_pt, (c - 1) % 8 + 1) + 0) ps 1.2 lc rgb "#999999" title word(candidates, c)'
}
eval cmd
