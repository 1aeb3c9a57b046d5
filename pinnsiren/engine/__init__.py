"""The numerical engine below the families: networks, derivative jets, samplers, loss terms,
the trainer and its hooks, least-squares output layers, FreSh, TUNER and sparsity."""
