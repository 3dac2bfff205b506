local f = io.open('/tmp/attnlab-pwned', 'w')
return {}