"""pcm_plugin: PCM-Net (ECCV 2024) as an OpenMMLab captioning plugin."""
import ast
import glob
import os.path as osp

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = osp.dirname(osp.abspath(__file__))

# Repository files an installed package carries in pcm_plugin/.mim, where
# pcm_plugin.apis.zoo (mmpretrain's list_models/get_model) and mmengine
# (`_base_ = 'pcm_plugin::zoo/NAME.py'`) find them, as mmpretrain ships its
# configs. Named file by file, not globbed from the root, so that a file
# leaves the wheel by deleting its line. The lab's configs live under
# projects/ and stay out: they serve the clone's tools (make demo).
MIM_FILES = (
    'model-index.yml',
    'configs/zoo/*',
    'configs/pcm_coco*.py',
    'configs/pcm_flickr*.py',
    'configs/_base_/models/pcm_net_vitb32.py',
    'configs/_base_/datasets/coco_sd_features.py',
    'configs/_base_/schedules/pcm_noam_12e.py',
)
# Data files inside the package: its small text resources. The lab
# (projects/: the mini world with its CLIP weights, the benchmarks) stays
# out of the wheel.
PACKAGE_DATA = (
    'resources/*.txt',
    'resources/*.csv',
)


def read_version() -> str:
    """The version written in pcm_plugin/version.py, read as text: building
    must not import the package (nor torch behind it)."""
    with open(osp.join(HERE, 'pcm_plugin', 'version.py'),
              encoding='utf-8') as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if (isinstance(node, ast.Assign)
                and node.targets[0].id == '__version__'):
            return ast.literal_eval(node.value)
    raise RuntimeError('pcm_plugin/version.py defines no __version__')


def mim_sources() -> list:
    """The repository files of :data:`MIM_FILES`, relative to the root.

    Returns:
        list: Sorted relative paths; a pattern matching nothing is an error
        (a wheel without its zoo must not build silently).
    """
    sources = []
    for pattern in MIM_FILES:
        found = sorted(
            osp.relpath(path, HERE)
            for path in glob.glob(osp.join(HERE, pattern))
            if osp.isfile(path))
        if not found:
            raise FileNotFoundError(
                f'error: setup.py MIM_FILES: {pattern!r} matches no file; '
                'build from a clone or an sdist that carries configs/ '
                '(MANIFEST.in), or remove the line')
        sources.extend(found)
    return sources


class BuildPyWithMim(build_py):
    """``build_py`` that also copies :data:`MIM_FILES` into
    ``pcm_plugin/.mim`` of the build. An editable install skips it: the zoo
    reads the repository there."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        for source in mim_sources():
            target = osp.join(self.build_lib, 'pcm_plugin', '.mim', source)
            self.mkpath(osp.dirname(target))
            self.copy_file(osp.join(HERE, source), target)


def readme() -> str:
    with open(osp.join(HERE, 'README.md'), encoding='utf-8') as f:
        return f.read()


setup(
    name='pcm_plugin',
    version=read_version(),
    description='PCM-Net zero-shot image captioning from synthetic images, '
    'as mmengine/mmpretrain components',
    long_description=readme(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=('pcm_plugin', 'pcm_plugin.*')),
    package_data={'pcm_plugin': list(PACKAGE_DATA)},
    cmdclass={'build_py': BuildPyWithMim},
    python_requires='>=3.9',
    # Honest ranges for users who bring their own (e.g. CUDA) torch. The
    # exact set tested on CPU is requirements/pinned.txt.
    install_requires=[
        'torch>=2.0',
        'numpy>=1.23,<2.4',
        'mmengine>=0.10.0,<1.0',
        'mmpretrain>=1.2.0,<1.3',
        'mmcv-lite>=2.0.0,<2.4.0',
        'transformers>=4.28,<=4.51.3',
        'tokenizers>=0.13',
        'open_clip_torch>=2.20',
        'diffusers>=0.25,<=0.39.0',
        'pycocoevalcap>=1.2',
        'pycocotools>=2.0',
        'tqdm',
        'safetensors>=0.4',
        'matplotlib>=3.5',
    ],
    extras_require={'tests': ['pytest']},
    license='MIT',
)
