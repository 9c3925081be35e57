"""Research code: the synthetic generator, pretext pretraining, probe training, dataset
readers, feature extraction, workflows and evaluation. It imports `models` and `explain`;
they never import it."""
