"""cyclegan: unpaired image-to-image translation (CycleGAN) and an unconditional MNIST GAN,
built on one shared GAN base (:mod:`cyclegan.gan`)."""

__version__ = "0.1.0"
