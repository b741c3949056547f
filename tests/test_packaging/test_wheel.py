"""The wheel a user installs (``pip install .``): built the way ``python -m
build`` does it (an sdist of the repository's files, then a wheel from that
sdist), listed, and installed into a fresh venv where the zoo and
``_base_ = 'pcm_plugin::...'`` work outside any clone."""
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile

import pytest
import yaml

from tests.helpers import REPO_ROOT, failed_run

MIM = 'pcm_plugin/.mim/'
ZOO_NAMES = ['pcm-net_vit-b32_coco', 'pcm-net_vit-b32_flickr30k',
             'pcm-net_vit-l14_coco', 'pcm-net_vit-l14_flickr30k']


def run_checked(cmd, **kwargs) -> subprocess.CompletedProcess:
    """Run ``cmd``; a failure shows its whole output."""
    proc = subprocess.run([str(c) for c in cmd], capture_output=True,
                          text=True, timeout=600, **kwargs)
    if proc.returncode != 0:
        raise AssertionError(failed_run(proc, cmd))
    return proc


def copy_repository_files(dest: str) -> None:
    """Copy the files a fresh clone has (tracked or not ignored): building
    in the shared working tree would leave build/ and egg-info there."""
    listing = run_checked(['git', 'ls-files', '-co', '--exclude-standard',
                           '-z'], cwd=REPO_ROOT).stdout
    for rel in filter(None, listing.split('\0')):
        source = osp.join(REPO_ROOT, rel)
        if osp.isfile(source):  # not a file deleted since the last commit
            os.makedirs(osp.dirname(osp.join(dest, rel)), exist_ok=True)
            shutil.copy2(source, osp.join(dest, rel))


def build_with_backend(hook: str, source_dir: str, out_dir: str) -> str:
    """Call setuptools' PEP 517 ``hook`` in ``source_dir``, as pip and
    ``python -m build`` do; returns the path of the file it wrote."""
    code = ('import sys; from setuptools import build_meta; '
            f'print(build_meta.{hook}(sys.argv[1]))')
    proc = run_checked([sys.executable, '-c', code, out_dir],
                       cwd=source_dir)
    return osp.join(out_dir, proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope='module')
def dists(tmp_path_factory) -> tuple:
    """(sdist, wheel): the wheel built from the sdist of the repository's
    files."""
    root = tmp_path_factory.mktemp('build')
    clone, dist = str(root / 'clone'), str(root / 'dist')
    os.makedirs(dist)
    copy_repository_files(clone)
    sdist = build_with_backend('build_sdist', clone, dist)
    with tarfile.open(sdist) as archive:
        archive.extractall(str(root / 'sdist'), filter='data')
    unpacked = osp.join(str(root / 'sdist'),
                        osp.basename(sdist)[:-len('.tar.gz')])
    return sdist, build_with_backend('build_wheel', unpacked, dist)


@pytest.fixture(scope='module')
def wheel(dists) -> str:
    return dists[1]


def test_wheel_carries_the_configs_and_model_index(wheel):
    from pcm_plugin.version import __version__
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        index = yaml.safe_load(archive.read(MIM + 'model-index.yml'))
        metafiles = {path: yaml.safe_load(archive.read(MIM + path))
                     for path in index['Import']}
        metadata = archive.read(
            f'pcm_plugin-{__version__}.dist-info/METADATA').decode()
    assert index['Import'] == ['configs/zoo/model-index.yml']
    metafile = metafiles['configs/zoo/model-index.yml']
    assert sorted(m['Name'] for m in metafile['Models']) == ZOO_NAMES
    for model in metafile['Models']:
        assert MIM + 'configs/zoo/' + model['Config'] in names
    configs = sorted(n[len(MIM):] for n in names
                     if n.startswith(MIM + 'configs/') and n.endswith('.py'))
    assert configs == [
        'configs/_base_/datasets/coco_sd_features.py',
        'configs/_base_/models/pcm_net_vitb32.py',
        'configs/_base_/schedules/pcm_noam_12e.py',
        'configs/pcm_coco.py', 'configs/pcm_coco2flickr.py',
        'configs/pcm_coco_vitl14.py', 'configs/pcm_flickr.py',
        'configs/pcm_flickr2coco.py', 'configs/pcm_flickr_vitl14.py',
    ] + [f'configs/zoo/{name}.py' for name in ZOO_NAMES]
    # Only the package and its record: no tests/, tools/ or stray folders.
    assert {n.split('/')[0] for n in names} == {
        'pcm_plugin', f'pcm_plugin-{__version__}.dist-info'}
    assert 'pcm_plugin/resources/coco_concepts_446.txt' in names
    assert f'\nVersion: {__version__}\n' in metadata


def test_every_file_of_the_package_folder_ships(wheel):
    """A data file added under pcm_plugin/ and not named in setup.py's
    PACKAGE_DATA would be missing from every install but a clone's."""
    listing = run_checked(['git', 'ls-files', '-co', '--exclude-standard',
                           'pcm_plugin'], cwd=REPO_ROOT).stdout.split()
    in_repository = {rel for rel in listing
                     if osp.isfile(osp.join(REPO_ROOT, rel))}
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = set(archive.namelist())
    assert in_repository - in_wheel == set()


def test_the_lab_stays_out_of_the_wheel(wheel):
    """projects/ (the mini world, its committed CLIP weights, the benchmark
    harness) serves a clone only: no file of it is in the wheel."""
    lab = ('mini_world', 'mini_clip', 'analysis', 'speed.py', 'benchmark',
           'projects')
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert [n for n in names if any(word in n for word in lab)] == []
    assert [n for n in names if n.endswith(('.pt', '.pth'))] == []


def test_licence_and_changelog_travel_with_the_release(dists):
    from pcm_plugin.version import __version__
    sdist, wheel = dists
    with tarfile.open(sdist) as archive:
        top = f'pcm_plugin-{__version__}/'
        sdist_names = set(archive.getnames())
    assert {top + 'LICENSE', top + 'CHANGELOG.md'} <= sdist_names
    with zipfile.ZipFile(wheel) as archive:
        info = f'pcm_plugin-{__version__}.dist-info/'
        licence = archive.read(info + 'licenses/LICENSE').decode()
        metadata = archive.read(info + 'METADATA').decode()
    assert licence.startswith('MIT License\n')
    assert 'Copyright (c) 2026 pcm_plugin contributors' in licence
    assert '\nLicense: MIT\n' in metadata
    assert '\nLicense-File: LICENSE\n' in metadata


def write_venv_over_project(venv: str) -> str:
    """A venv without pcm_plugin whose path reaches the project venv's
    packages (a ``.pth`` file, so nothing is downloaded); returns its
    python. The project venv's own ``.pth`` hooks (the torchvision shim)
    run there too, except the editable install of the clone."""
    run_checked([sys.executable, '-m', 'venv', '--without-pip', venv])
    python = osp.join(venv, 'bin', 'python')
    site = run_checked([python, '-c', 'import sysconfig; '
                        "print(sysconfig.get_paths()['purelib'])"]
                       ).stdout.strip()
    project_site = sysconfig.get_paths()['purelib']
    # Named to sort first: the hooks below import from that path.
    with open(osp.join(site, '00-project-venv.pth'), 'w') as f:
        f.write(project_site + '\n')
    for name in os.listdir(project_site):
        if name.endswith('.pth') and not name.startswith('__editable__'):
            shutil.copy(osp.join(project_site, name), site)
    return python


INSTALLED_CHECK = '''
import json
import mmpretrain
import pcm_plugin
from mmengine.config import Config
from mmengine.registry import MODELS, TRANSFORMS, DefaultScope

out = dict(package=pcm_plugin.__file__,
           models=mmpretrain.list_models('pcm*'),
           vocab={name: mmpretrain.get_model(name).decoder.vocab_size
                  for name in mmpretrain.list_models('pcm*')})
cfg = Config.fromfile('mine.py')
# Built the way the Runner builds: mmengine's registries in the config's
# default scope, the inherited dicts carrying the scope 'pcm_plugin'.
DefaultScope.get_instance('check', scope_name=cfg.default_scope)
model = MODELS.build(cfg.model)
out.update(default_scope=cfg.default_scope,
           scheduler=cfg.param_scheduler[0].type,
           model_scope=cfg.model._scope_,
           model=type(model).__name__,
           decoder_layers=len(model.decoder.layers),
           transforms=[type(TRANSFORMS.build(t)).__name__
                       for t in cfg.test_dataloader.dataset.pipeline])
print(json.dumps(out))
'''


@pytest.mark.slow
def test_installed_wheel_has_the_zoo_and_config_inheritance_outside_a_clone(
        wheel, tmp_path):
    python = write_venv_over_project(str(tmp_path / 'venv'))
    run_checked([sys.executable, '-m', 'pip', '--python', python, 'install',
                 '--no-deps', '--no-index', '--no-warn-script-location',
                 wheel])
    user = tmp_path / 'user'
    user.mkdir()
    (user / 'mine.py').write_text(
        "_base_ = 'pcm_plugin::zoo/pcm-net_vit-b32_coco.py'\n"
        'model = dict(decoder=dict(num_layers=2))\n')
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env['OMP_NUM_THREADS'] = '1'
    proc = run_checked([python, '-c', INSTALLED_CHECK], cwd=str(user),
                       env=env)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out['package'] == osp.join(
        str(tmp_path / 'venv'), 'lib',
        f'python{sys.version_info.major}.{sys.version_info.minor}',
        'site-packages', 'pcm_plugin', '__init__.py')
    assert out['models'] == ZOO_NAMES
    assert out['vocab'] == {
        'pcm-net_vit-b32_coco': 10202, 'pcm-net_vit-b32_flickr30k': 7555,
        'pcm-net_vit-l14_coco': 10202, 'pcm-net_vit-l14_flickr30k': 7555}
    assert out['default_scope'] == 'mmpretrain'  # mmpretrain::, two up
    assert out['scheduler'] == 'NoamLR'  # pcm_plugin's _base_, two up
    assert out['model_scope'] == 'pcm_plugin'
    assert out['model'] == 'PCMCaptioner'
    assert out['decoder_layers'] == 2  # the user's override
    assert out['transforms'] == ['LoadCLIPFeatures', 'PackCaptionInputs']
