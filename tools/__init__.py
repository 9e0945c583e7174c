"""Development tools: benchmark, chaos run, browser check, README table writers, sample data.

Run from the repository root; they are not part of the installed package.
"""
