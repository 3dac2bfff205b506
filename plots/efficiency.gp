# Decode time per generated token and decode cache against context length, one line per model.
# Files: one per label: context, decode ms per step, cache MiB per sequence, prefill ms.
# Variables: files, titles (word lists), device, keypos, out, fmt, experiment.
load "plots/common.gp"
W = 1250
H = 480 + 18 * keyrows
if (fmt eq "svg") {
    set terminal svg size W,H dynamic enhanced font "Helvetica,13" background rgb "white"
} else {
    set terminal pngcairo size W,H enhanced font "Helvetica,11" background rgb "white"
}
set output out . "." . fmt
set multiplot title sprintf("%s: decoding cost against context (%s)", experiment, device) noenhanced
set logscale xy 2
set xlabel "context length (tokens)"
set format x "%.0b%B"
call "plots/panels.gp" 1 2
set ylabel "decode time per step (ms)"
plot for [i=1:words(files)] word(files, i) using 1:2 lt i dt dash(i) title word(titles, i)
call "plots/panels.gp" 2 2 "ylabel"
set ylabel "decode cache per sequence (MiB)"
plot for [i=1:words(files)] word(files, i) using 1:3 lt i dt dash(i) title word(titles, i)
unset multiplot
