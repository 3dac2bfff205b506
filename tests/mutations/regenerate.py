#!/usr/bin/env python3
"""Rewrites one mutation patch against the current tree: python3 tests/mutations/regenerate.py
NAME.patch FILE 'OLD' 'NEW' [FILE 'OLD' 'NEW' ...] replaces each exact OLD (which must occur once)
by NEW, takes `git diff` of those files, and restores them byte for byte, keeping the patch's
header (its description and expect-fail lines). Refuses files with uncommitted changes, whose
diff would carry them into the patch."""
import subprocess
import sys

patch, edits = sys.argv[1], sys.argv[2:]
if not edits or len(edits) % 3:
    sys.exit(__doc__)
files = edits[0::3]
dirty = subprocess.run(["git", "status", "--porcelain", "--"] + files, capture_output=True, text=True).stdout
if dirty:
    sys.exit(f"uncommitted changes in {' '.join(files)}: commit them first")
saved = {f: open(f).read() for f in files}
try:
    for f, old, new in zip(edits[0::3], edits[1::3], edits[2::3]):
        text = open(f).read()
        if text.count(old) != 1:
            sys.exit(f"{f}: the text to replace occurs {text.count(old)} times, expected once")
        open(f, "w").write(text.replace(old, new))
    diff = subprocess.run(["git", "diff", "--"] + files, capture_output=True, text=True, check=True).stdout
finally:
    for f, text in saved.items():
        open(f, "w").write(text)
header = open(patch).read().split("diff --git")[0]
open(patch, "w").write(header + diff)
