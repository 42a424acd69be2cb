"""Analyses over parsed evidence: hangs (hang.py) and the others named in DESIGN.md."""
