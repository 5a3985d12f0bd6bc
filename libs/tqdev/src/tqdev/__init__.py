"""Developer tooling: start the embedded AWS emulator and the whole tq stack as local processes."""
