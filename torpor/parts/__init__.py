"""One module per kind of process state, each holding both its dump and its restore."""
