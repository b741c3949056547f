"""pcm_plugin: PCM-Net (ECCV 2024) as an OpenMMLab captioning plugin."""
import ast

from setuptools import find_packages, setup


def read_version() -> str:
    """The version written in pcm_plugin/version.py, read as text: building
    must not import the package (nor torch behind it)."""
    with open('pcm_plugin/version.py', encoding='utf-8') as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if (isinstance(node, ast.Assign)
                and node.targets[0].id == '__version__'):
            return ast.literal_eval(node.value)
    raise RuntimeError('pcm_plugin/version.py defines no __version__')


def readme() -> str:
    with open('README.md', encoding='utf-8') as f:
        return f.read()


setup(
    name='pcm_plugin',
    version=read_version(),
    description='PCM-Net zero-shot image captioning from synthetic images, '
    'as mmengine/mmpretrain components',
    long_description=readme(),
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('tests', 'tests.*', 'configs', 'tools')),
    include_package_data=True,
    package_data={'pcm_plugin': ['resources/*', 'resources/**/*']},
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
