"""PDE families: each module turns its spec into named loss terms."""
