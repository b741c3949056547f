"""``model.mixup``'s feature layout, read from the feature stores.

A feature store's ``index.json`` already says how wide its patch tokens and
global embeddings are and how many patches an image has; the model must be
built with the same ``patch_dim``, ``global_dim`` and ``num_patches``. The
stores are the one source of truth: a config may leave the three keys
unset (or None) and :func:`fill_feature_layout` fills them in, and a config
that sets them wrongly is refused with one message naming all three keys,
the config's values and the store's, before any model is built (the shape
checks inside the model would report them one at a time, the first one
blaming the CLIP checkpoint).
"""
import os.path as osp
from typing import Dict, Iterator, List, Mapping, Tuple

from .feature_store import INDEX, LAYOUT_KEYS, store_layout

DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def _feature_dirs(dataset, where: str) -> Iterator[Tuple[str, str]]:
    """``(config key, feature_dir)`` of a dataset config and of the
    datasets it wraps (``dataset=`` / ``datasets=[...]``)."""
    if not isinstance(dataset, Mapping):
        return
    if isinstance(dataset.get('feature_dir'), str):
        yield f'{where}.feature_dir', dataset['feature_dir']
    yield from _feature_dirs(dataset.get('dataset'), f'{where}.dataset')
    for i, inner in enumerate(dataset.get('datasets') or ()):
        yield from _feature_dirs(inner, f'{where}.datasets[{i}]')


def config_feature_dirs(cfg: Mapping) -> List[Tuple[str, str]]:
    """Every ``feature_dir`` the config's dataloaders name.

    Args:
        cfg (Mapping): A whole config (``mmengine.Config`` or a dict).

    Returns:
        list[tuple[str, str]]: ``(config key, directory)`` pairs, train
        first.
    """
    found = []
    for loader in DATALOADERS:
        dataloader = cfg.get(loader)
        if isinstance(dataloader, Mapping):
            found.extend(_feature_dirs(dataloader.get('dataset'),
                                       f'{loader}.dataset'))
    return found


def _describe(layout: Mapping) -> str:
    return ', '.join(f'{key}={layout.get(key)}' for key in LAYOUT_KEYS)


def _existing_layouts(cfg: Mapping) -> List[Tuple[str, str, Dict]]:
    """``(config key, directory, layout)`` of every named store that
    exists; the stores must agree with each other."""
    layouts = [(where, root, store_layout(root))
               for where, root in config_feature_dirs(cfg)
               if osp.isfile(osp.join(root, INDEX))]
    if len({tuple(layout.values()) for *_, layout in layouts}) > 1:
        raise ValueError(
            'the feature stores of this config come from different CLIP '
            'backbones: ' + '; '.join(
                f'{where} {root} has {_describe(layout)}'
                for where, root, layout in layouts)
            + ': extract every split with the same CLIP')
    return layouts


def fill_feature_layout(cfg: Mapping) -> Dict[str, int]:
    """Fill ``model.mixup``'s unset feature layout from the feature stores,
    and check a set one against them.

    Stores that do not exist on this machine are passed over (a test run
    needs only the test store); the datasets name them when they are read.

    Args:
        cfg (Mapping): A whole config, changed in place.

    Returns:
        dict: The keys filled in, with their values (empty when the config
        set them all or has no ``model.mixup``).

    Raises:
        ValueError: A set key disagrees with the stores (the message names
            all three keys, the config's values and the store's), the
            stores disagree with each other, or a key is unset and no
            store exists to read it from.
    """
    mixup = (cfg.get('model') or {}).get('mixup')
    if not isinstance(mixup, Mapping):
        return {}
    unset = [key for key in LAYOUT_KEYS if mixup.get(key) is None]
    layouts = _existing_layouts(cfg)
    if not layouts:
        if unset:
            named = [root for _, root in config_feature_dirs(cfg)]
            raise ValueError(
                f'model.mixup.{", ".join(unset)} not set, and no feature '
                'store of the config exists to read them from ('
                + (', '.join(named) if named else 'no dataloader names a '
                   'feature_dir')
                + '): set them in the config (a store\'s index.json has '
                'patch_shape = [num_patches, patch_dim] and global_dim)')
        return {}
    where, root, layout = layouts[0]
    wrong = [key for key in LAYOUT_KEYS
             if mixup.get(key) is not None and mixup[key] != layout[key]]
    if wrong:
        raise ValueError(
            f'model.mixup has {_describe(mixup)} but the features in '
            f'{root} ({where}) have '
            f'{_describe(layout)}: set model.mixup.{_describe(layout)} in '
            'the config, or None to read them from the feature store')
    filled = {key: layout[key] for key in unset}
    mixup.update(filled)
    return filled
