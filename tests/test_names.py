#!/usr/bin/env python3
"""Fails when a Catch2 test name holds a ';': ctest splits it into tests that run nothing."""
import glob, os, re, sys
root = os.path.dirname(os.path.abspath(__file__))
name = re.compile(r'TEST_CASE\(\s*((?:"(?:[^"\\]|\\.)*"\s*)+)')
bad = []
for path in glob.glob(os.path.join(root, "**", "*.cpp"), recursive=True):
    for m in name.finditer(open(path, encoding="utf-8").read()):
        if ";" in m.group(1):
            bad.append(f"{os.path.relpath(path, root)}: {m.group(1).strip()[:80]}")
for b in bad:
    print(f"test name with ';' (ctest splits it): {b}")
print(f"{len(bad)} test names with ';'")
sys.exit(1 if bad else 0)
