"""Install the torchvision CPU shim into this interpreter's site-packages.

Only acts when torch is a CPU build (``torch.version.cuda is None``) and a
torchvision is installed whose compiled ops do not load with it. A user with a
CUDA torch gets nothing extra. Idempotent; ``--uninstall`` removes it.

    python tools/install_torchvision_shim.py [--uninstall]
"""
import argparse
import importlib.util
import os
import os.path as osp
import shutil
import subprocess
import sys
import sysconfig

MODULE = '_pcm_torchvision_cpu_shim'
SOURCE = osp.join(
    osp.dirname(osp.dirname(osp.abspath(__file__))), 'pcm_plugin', 'utils',
    'torchvision_cpu_shim.py')


def torchvision_imports_cleanly() -> bool:
    """Try ``import torchvision`` in a fresh interpreter with no shim."""
    env = dict(os.environ, TORCHVISION_CPU_SHIM='0')
    proc = subprocess.run([sys.executable, '-c', 'import torchvision'],
                          env=env, capture_output=True, text=True)
    return proc.returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--uninstall', action='store_true')
    args = parser.parse_args()
    site = sysconfig.get_paths()['purelib']
    target = osp.join(site, MODULE + '.py')
    pth = osp.join(site, MODULE + '.pth')
    if args.uninstall:
        for path in (target, pth):
            if osp.exists(path):
                os.remove(path)
        print('torchvision CPU shim removed')
        return 0
    import torch
    if torch.version.cuda is not None:
        print(f'torch {torch.__version__} has CUDA: no shim needed')
        return 0
    if importlib.util.find_spec('torchvision') is None:
        print('torchvision not installed: no shim needed')
        return 0
    if osp.exists(pth) and osp.exists(target):
        shutil.copyfile(SOURCE, target)  # refresh in case it changed
        print('torchvision CPU shim already installed')
        return 0
    if torchvision_imports_cleanly():
        print('torchvision imports cleanly with this torch: no shim needed')
        return 0
    shutil.copyfile(SOURCE, target)
    with open(pth, 'w') as f:
        f.write(f'import {MODULE}\n')
    print(f'installed torchvision CPU shim into {site}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
