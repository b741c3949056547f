"""Let a CUDA-linked torchvision wheel import next to a CPU-only torch.

The only torchvision wheel for torch 2.13 links ``libtorch_cuda.so``; with the
CPU build of torch its ``_C.so`` cannot load, and the Python side then fails
at import with ``operator torchvision::nms does not exist``. That takes
mmpretrain, open_clip, timm and transformers down with it. Declaring the two
operator schemas torchvision registers fake kernels for is enough for the
rest of torchvision (transforms, models) to import and work; ``nms``,
``roi_align`` and ``torchvision.io`` image decoding still raise.

This file is copied as a top-level module into site-packages, with a ``.pth``
line importing it, by ``tools/install_torchvision_shim.py`` -- only when torch
has no CUDA. It imports nothing at interpreter start; the work happens the
first time something imports torchvision. ``TORCHVISION_CPU_SHIM=0`` turns it
off. If torchvision's own extension loads (a matching build), it does nothing.
"""
import importlib.util
import os
import sys

_KEEP_ALIVE = []  # torch.library.Library objects must outlive the import


def declare_torchvision_ops() -> None:
    """Define ``torchvision::nms``/``qnms`` schemas unless ``_C.so`` loads."""
    spec = importlib.util.find_spec('torchvision')
    if spec is None or spec.origin is None:
        return
    import torch  # deferred: this module loads at every interpreter start
    try:
        torch.ops.load_library(
            os.path.join(os.path.dirname(spec.origin), '_C.so'))
        return  # a matching torchvision build: nothing to patch
    except (OSError, ImportError, RuntimeError):
        pass
    lib = torch.library.Library('torchvision', 'DEF')
    for op in ('nms', 'qnms'):
        try:
            lib.define(
                f'{op}(Tensor dets, Tensor scores, float iou_threshold) '
                '-> Tensor')
        except RuntimeError:  # already defined
            pass
    _KEEP_ALIVE.append(lib)


class _FirstTorchvisionImport:
    """Meta-path finder that patches once, then steps aside."""

    def find_spec(self, name, path=None, target=None):
        if name == 'torchvision':
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            try:
                declare_torchvision_ops()
            except Exception as exc:  # never break the interpreter
                print(f'torchvision_cpu_shim: {exc!r}', file=sys.stderr)
        return None


if (os.environ.get('TORCHVISION_CPU_SHIM', '1') != '0'
        and 'torchvision' not in sys.modules):
    sys.meta_path.insert(0, _FirstTorchvisionImport())
