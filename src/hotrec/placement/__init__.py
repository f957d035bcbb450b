"""Where embedding rows live: popularity profiling, the hot set, and the device replica."""
