"""Example seqbench plugin: one model (minGRU) and one task (running parity)."""
