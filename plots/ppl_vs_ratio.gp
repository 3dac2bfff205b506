# Validation perplexity against the hybrid ratio (mean and spread over seeds).
# File: file with columns index, ratio label, mean, spread. Variables: file, out, fmt, experiment.
load "plots/common.gp"
set title sprintf("%s: validation perplexity against hybrid ratio", experiment) noenhanced
set xlabel "linear-time : full-attention layers"
set ylabel "validation perplexity (per byte)"
set xrange [-0.5:*]
set offsets 0, 0.5, 0, 0
unset key
plot file using 1:3:4:xticlabels(2) with yerrorbars lt 1 pt 7 ps 1.2, "" using 1:3 with lines lt 1
