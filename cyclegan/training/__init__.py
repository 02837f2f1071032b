"""Training: the loop (device, precision, compile, logging, previews), resume, distributed data
parallel, and the CycleGAN and MNIST GAN runs."""
