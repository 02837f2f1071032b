"""Serving a trained model: model sources (what --model names), loading model files, the Translator, tiling, Winograd, folder
translation, the MNIST sampler, export and downloads. Never imports training or albumentations."""
