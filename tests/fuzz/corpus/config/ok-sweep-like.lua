local m = {}
for i = 1, 3 do m[#m + 1] = i end
return { model = { d_model = 64 * #m } }