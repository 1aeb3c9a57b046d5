"""What the commands do: solve, reference, compare, tune, prune, and the CLI front end."""
