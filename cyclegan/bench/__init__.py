"""``cyclegan bench``: timing training steps and translation across sizes, batches and switches."""
