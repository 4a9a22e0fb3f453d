"""Training: the loop (:class:`~rnnlab.training.trainer.Trainer`), its callbacks, batch sources,
optimizers, device and precision, checkpoints, CUDA graphs and several processes."""
