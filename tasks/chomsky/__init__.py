"""The Chomsky-hierarchy suite (Delétang et al. 2023): 15 tasks, one per file, registered as `chomsky/<name>`."""
