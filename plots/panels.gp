# `call "plots/panels.gp" P N [Y]`: panel P of N side by side in a multiplot, every panel of one width
# (Y: the panel has a y label of its own, so leave room for it),
# and the legend (drawn with the last) outside them: in a strip at the right, or under them when
# keypos says "below" (keyrows rows). Callers set W and H, the canvas size in pixels, and may set
# key_strip, the right strip's width in pixels (230 unless set: room for names of about 20 characters).
p = int(ARG1)
n = int(ARG2)
below = strstrt(keypos, "below") > 0
x0 = 80.0 / W
x1 = below ? 1 - 25.0 / W : 1 - (exists("key_strip") ? 1.0 * key_strip : 230.0) / W
w = (x1 - x0) / n
set lmargin at screen x0 + (p - 1) * w + (p > 1 ? (ARGC > 2 ? 90.0 : 40.0) / W : 0)
set rmargin at screen x0 + p * w - 20.0 / W
set tmargin at screen 1 - 70.0 / H
set bmargin at screen (below ? 75.0 + 18 * keyrows : 65.0) / H
if (p < n) {
    unset key
} else {
    if (below) { set key at screen 0.5, 10.0 / H center bottom } else { set key at screen x1 + 10.0 / W, 1 - 70.0 / H left top vertical }
}
