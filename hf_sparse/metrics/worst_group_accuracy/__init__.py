"""The `worst_group_accuracy` evaluate module (load it with `evaluate.load(hf_sparse.metrics.PATHS["worst_group_accuracy"])`)."""
