"""Prepare what benchmarks/gpu_check.sh needs on a GPU machine that reaches no network.

The lent GPU machines (the device tool's H100/H200) run their own image: Python 3.12, its
own torch, torchvision and numpy, and nothing can be installed there from a registry. This
script gathers, into ``--dest`` (default ``.gpu/``, ignored by git, carried with the call):

* ``wheels/``: every distribution fedleak needs at run time — the closure of its requirements
  as installed here, at the versions installed here — that the image lacks (its package list,
  ``gpu_image_packages.txt``, read off such a machine), as CPython 3.12 manylinux wheels.
  ``protobuf`` travels although the image has one: Flower's messages need 5.28–6.x and the
  image's version was never read. ``uv`` stays behind (Flower's CLI builds apps with it; the
  simulation never imports it). Ray's wheel (74 MB) is repacked without what neither Flower
  nor fedleak imports — the Java workers (32 MB), the dashboard's web client (fedleak starts
  Ray without a dashboard), RLlib, Serve and the LLM library — to fit the 64 MiB a call may
  carry with the working tree.
* ``mnist/``: the MNIST t10k files from ``../shared/data/mnist`` (the shared folder does not
  travel); never committed.

    python benchmarks/gpu_prepare.py [--dest .gpu] [--mnist ../shared/data/mnist] [--python 3.12]

(``--python 3.11`` gathers the same set for this machine's Python: a check, in a virtual
environment holding only the image's packages, that the set is whole.)

then ``run(carry=[".gpu"], command="bash benchmarks/gpu_check.sh")``.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement

from mnist_setup import MNIST_ROOT

HERE = Path(__file__).resolve().parent
IMAGE_PACKAGES = HERE / "gpu_image_packages.txt"
ALWAYS = {"protobuf"}
NEVER = {"fedleak", "uv"}
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64"]
RAY_LEFT_OUT = ("ray/jars/", "ray/dashboard/client/", "ray/rllib/", "ray/serve/", "ray/llm/")


def canonical(name: str) -> str:
    """A distribution's name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_closure(root: str, python: str) -> dict[str, str]:
    """Every distribution ``root`` needs at run time under Python ``python`` (markers judged for it, the
    extras it asks for included): name → the version installed here."""
    found: dict[str, set[str]] = {}
    pending = [(root, frozenset[str]())]
    while pending:
        name, extras = pending.pop()
        try:
            dist = distribution(name)
        except PackageNotFoundError:  # a requirement for another platform or Python
            continue
        key = canonical(dist.metadata["Name"])
        if key in found and extras <= found[key]:
            continue
        found.setdefault(key, set()).update(extras)
        for line in dist.requires or []:
            requirement = Requirement(line)
            wanted = {""} | set(extras)
            if requirement.marker is None or any(requirement.marker.evaluate(
                    {"extra": e, "python_version": python, "python_full_version": f"{python}.0"}) for e in wanted):
                pending.append((requirement.name, frozenset(requirement.extras)))
    return {key: distribution(key).version for key in sorted(found)}


def missing_on_image(needed: dict[str, str]) -> dict[str, str]:
    """What of ``needed`` must travel: what the image lacks, and :data:`ALWAYS`; never :data:`NEVER` or CUDA's own."""
    lines = (line.strip() for line in IMAGE_PACKAGES.read_text().splitlines())
    have = {canonical(line) for line in lines if line and not line.startswith("#")}
    return {name: version for name, version in needed.items()
            if (name not in have or name in ALWAYS) and name not in NEVER and not name.startswith("nvidia-")}


def download(packages: dict[str, str], folder: Path, python: str) -> None:
    """``packages`` as CPython ``python`` manylinux x86-64 wheels into ``folder``, without their dependencies."""
    platforms = [option for platform in PLATFORMS for option in ("--platform", platform)]
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--python-version", python, "--implementation", "cp", *platforms, "--dest", str(folder),
                    *(f"{name}=={version}" for name, version in packages.items())], check=True)


def slimmed_ray(wheel: Path) -> None:
    """Rewrite Ray's wheel without the folders of :data:`RAY_LEFT_OUT` (their RECORD lines dropped too)."""
    slim = wheel.with_suffix(".slim")
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(slim, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            if item.filename.startswith(RAY_LEFT_OUT):
                continue
            data = source.read(item)
            if item.filename.endswith(".dist-info/RECORD"):
                data = b"".join(line for line in data.splitlines(keepends=True)
                                if not line.startswith(tuple(p.encode() for p in RAY_LEFT_OUT)))
            target.writestr(item, data)
    slim.replace(wheel)


def main() -> None:
    """Gather the wheels and the MNIST files into ``--dest``; say what and how much."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=HERE.parent / ".gpu")
    parser.add_argument("--mnist", type=Path, default=MNIST_ROOT)
    parser.add_argument("--python", default="3.12", help="the GPU image's Python (3.12)")
    args = parser.parse_args()
    wheels = args.dest / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir(parents=True)
    packages = missing_on_image(requirement_closure("fedleak", args.python))
    print(f"{len(packages)} distributions the GPU image lacks: "
          + ", ".join(f"{name} {version}" for name, version in packages.items()), flush=True)
    download(packages, wheels, args.python)
    for wheel in wheels.glob("ray-*.whl"):
        slimmed_ray(wheel)
    mnist = args.dest / "mnist"
    mnist.mkdir(exist_ok=True)
    for path in sorted(args.mnist.glob("t10k-*-ubyte.gz")):
        shutil.copy2(path, mnist / path.name)
    size = sum(path.stat().st_size for path in args.dest.rglob("*") if path.is_file())
    print(f"{args.dest}: {len(list(wheels.glob('*.whl')))} wheels, {len(list(mnist.iterdir()))} MNIST files, "
          f"{size / 2**20:.1f} MiB (a device call carries at most 64 MiB with the working tree)")


if __name__ == "__main__":
    main()
