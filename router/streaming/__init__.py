"""Streams: the caller's stream objects, their drivers, and stitching attempts into one answer."""
