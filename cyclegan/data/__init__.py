"""Data on disk -> tensors: image decoding, unpaired image folders, MNIST/IDX files, and the
albumentations pipelines (cyclegan.data.transforms, imported only by training)."""
