"""Reporting: progress bars for long work and charts written as PNG files (one pyplot helper)."""
