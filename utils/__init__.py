"""Library code of the trainer: data, boxes, loss, metrics, reproducibility."""
