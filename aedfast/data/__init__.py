"""Dataset readers and the synthetic surveillance benchmark."""
