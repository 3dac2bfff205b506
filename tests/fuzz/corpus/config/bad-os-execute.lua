os.execute('touch /tmp/attnlab-pwned')
return {}