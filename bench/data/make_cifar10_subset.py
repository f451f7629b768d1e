"""Build ``cifar10_subset.npz`` (20 real CIFAR-10 images) from the PyPI package ``foolbox`` 3.3.4.

The wheel (https://github.com/bethgelab/foolbox, MIT) ships, for its ``samples()`` helper, 20 CIFAR-10
images as 32x32 RGB PNG files ``foolbox/data/cifar10_NN_L.png`` (NN the index, L the label). Their
labels, 3 8 8 0 6 6 1 6 3 1 0 9 5 7 9 8 5 7 8 6, are those of the first 20 images of CIFAR-10's test
split; the package itself does not say where they come from. PNG is lossless, so the pixels are the
original 8-bit values. The script reads the PNGs straight from the wheel (no install) and stores
``images`` uint8 (20, 32, 32, 3) (height, width, channel: torchvision's ``CIFAR10.data`` layout) and
``labels`` uint8 (20,), in the package's order.

    cd /tmp && pip download --no-deps foolbox==3.3.4 -d /tmp/foolbox
    python bench/data/make_cifar10_subset.py /tmp/foolbox/foolbox-3.3.4-py3-none-any.whl
"""

import io
import re
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

NAME = re.compile(r"^foolbox/data/cifar10_(\d\d)_(\d)\.png$")


def main(wheel: str, dst: str = str(Path(__file__).with_name("cifar10_subset.npz"))) -> None:
    found = {}
    with zipfile.ZipFile(wheel) as z:
        for n in z.namelist():
            m = NAME.match(n)
            if m:
                img = Image.open(io.BytesIO(z.read(n)))
                if img.mode != "RGB" or img.size != (32, 32):
                    raise SystemExit(f"{n}: expected a 32x32 RGB image, found {img.mode} {img.size}")
                found[int(m.group(1))] = (np.asarray(img, dtype=np.uint8), int(m.group(2)))
    if sorted(found) != list(range(20)):
        raise SystemExit(f"expected cifar10_00 .. cifar10_19 in {wheel}, found {sorted(found)}")
    x = np.stack([found[i][0] for i in range(20)])
    y = np.array([found[i][1] for i in range(20)], dtype=np.uint8)
    np.savez_compressed(dst, images=x, labels=y)
    print(f"{dst}: {x.shape} {x.dtype}, labels {y.tolist()}")


if __name__ == "__main__":
    main(*sys.argv[1:])
