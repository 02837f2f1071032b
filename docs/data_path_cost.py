"""Per-batch cost of the two training data paths alone, no training: the DataLoader in the main
process (decode, albumentations, collate) against ``--data-on-device on`` (one gather on the
device), 32 px grayscale crops, batch 1, one thread, over every image of DIR/trainA and DIR/trainB.

    python docs/data_path_cost.py DIR       (e.g. a folder from cyclegan.bench.loop.synthetic_folder)
"""

import sys
import time
from types import SimpleNamespace

import torch

from cyclegan.data.augment_config import AugmentConfig
from cyclegan.data.resident import loader_for
from cyclegan.data.unpaired import EpochSampler, UnpairedImageDataset

torch.set_num_threads(1)
root = sys.argv[1]
ds = UnpairedImageDataset(f"{root}/trainA", f"{root}/trainB", AugmentConfig(load_size=36, crop_size=32, channels=1))
sampler = EpochSampler(len(ds))
paths = {"DataLoader, 0 workers": torch.utils.data.DataLoader(ds, batch_size=1, sampler=sampler, num_workers=0),
         "on the device": loader_for(ds, sampler, SimpleNamespace(data_on_device="on", batch_size=1),
                                     torch.device("cpu"))}
for _ in range(3):
    for name, loader in paths.items():
        start = time.perf_counter()
        n = sum(1 for _ in loader)
        print(f"{name}: {1e3 * (time.perf_counter() - start) / n:.3f} ms per batch ({n} batches)")
