"""Serving: Waitress, stop signals, and several web processes on one address (--processes N)."""
