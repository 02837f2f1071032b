"""How tests/data/compat/ was written, with the code of commit d9e9900 (the flat layout, before
issue 17 moved the modules). Kept as a record: it imports the old paths and is not meant to run again;
the files it wrote must keep loading and translating identically (tests/test_compat.py)."""
from dataclasses import replace
from pathlib import Path
import numpy as np, torch, sys
sys.path.insert(0, "tests")
import tiny_models
tiny_models.TINY = replace(tiny_models.TINY, ngf=2, ndf=2, ema_decay=0.0, netD="pixel", n_layers_D=1)
from tiny_models import tiny_checkpoint, tiny_export
from cyclegan.translate import load_generator, Translator
out = Path("tests/data/compat")
ck = tiny_checkpoint(out / "run_ckpt", seed=1)
ex = tiny_export(out / "run_export", seed=2)
torch.manual_seed(0)
x = torch.rand(1, 3, 8, 8) * 2 - 1
rng = np.random.default_rng(0)
img = rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)
res = {"input": x, "image": torch.from_numpy(img)}
torch.set_num_threads(1)
for name, path in (("checkpoint", ck), ("export", ex)):
    for d in ("AtoB", "BtoA"):
        g = load_generator(path, d)
        with torch.no_grad():
            res[f"{name}_{d}_net"] = g.net.eval()(x)
        res[f"{name}_{d}_translate"] = torch.from_numpy(Translator(g, device="cpu", winograd=False, size=16).translate(img))
torch.save(res, out / "expected.pt")
