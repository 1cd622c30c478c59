"""The `bias_auc` evaluate module (load it with `evaluate.load(hf_sparse.metrics.PATHS["bias_auc"])`)."""
