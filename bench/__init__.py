"""`make bench`: side-by-side measurements; see ../shared/BENCH.md for the record names."""
