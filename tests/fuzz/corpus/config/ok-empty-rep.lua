return { experiment = 'r' .. (''):rep(2^40) }
