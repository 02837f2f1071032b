"""nn.Modules and objectives only: networks, the shared GAN base (losses, image pool, init, the
alternating D/G step), CycleGAN, CUT / FastCUT and the MNIST GAN with their config dataclasses. Imports nothing above it."""
