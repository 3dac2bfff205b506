# Decode time per generated token and decode cache against context length, one line per model.
# Files: one per label: context, decode ms per step, cache MiB per sequence, prefill ms.
# Variables: files, titles, device, out, fmt, experiment.
load "plots/common.gp"
set terminal pngcairo size 1200,480 enhanced font "Helvetica,11" background rgb "white"
if (fmt eq "svg") { set terminal svg size 1200,480 dynamic enhanced font "Helvetica,13" background rgb "white" }
set output out . "." . fmt
set multiplot layout 1,2 title sprintf("%s: decoding cost against context (%s)", experiment, device) noenhanced
set logscale xy 2
set xlabel "context length (tokens)"
set format x "%.0b%B"
set ylabel "decode time per step (ms)"
unset key
plot for [i=1:words(files)] word(files, i) using 1:2 title word(titles, i)
set ylabel "decode cache per sequence (MiB)"
set key outside right top
plot for [i=1:words(files)] word(files, i) using 1:3 title word(titles, i)
unset multiplot
