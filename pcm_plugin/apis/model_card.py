"""The model card of a release: what it was trained on, its scores, how
to use it, and which form is safe to accept.

A folder release holds it as ``README.md``; a one-file release in its
metadata (:func:`read_model_card` prints either).
"""
import os.path as osp
from typing import Dict, List, Optional

from mmengine.config import Config

from pcm_plugin.clip.release_tower import safetensors_metadata

CARD = 'README.md'  # the model card of a folder release
# ... and its key in the safetensors metadata of a one-file release
MODEL_CARD_KEY = 'pcm_plugin.model_card'


def model_card(cfg: Config, manifest: dict, *, out: str, vocab_size: int,
               num_concepts: Optional[int], with_clip: bool) -> str:
    """The card of the release ``out`` (Markdown).

    Args:
        cfg (Config): The config the release was built from.
        manifest (dict): Its manifest (``name``, ``source``, ``metrics``,
            ``clip_model``), file names only.
        out (str): The release path (its name is used in the commands).
        vocab_size (int): The decoder's vocabulary size.
        num_concepts (int, optional): Concepts in the bank; None without
            a mix-up.
        with_clip (bool): Whether the release carries its CLIP.

    Returns:
        str: The card.
    """
    name = osp.basename(osp.normpath(out))
    one_file = out.endswith('.safetensors')
    lines = [f'# {manifest["name"]}', '',
             'A PCM-Net zero-shot image captioner (Luo et al., ECCV 2024), '
             'released with pcm_plugin\'s `tools/publish_model.py`.', '',
             '## What it was trained on', '']
    lines += [f'- {line}' for line in _training_lines(
        cfg, manifest, vocab_size, num_concepts)]
    lines += ['', '## Scores', '']
    lines += _score_lines(manifest.get('metrics') or {})
    lines += ['', '## How it captions', '', _decoding_line(cfg.model)]
    lines += ['', '## How to use it', '', '```bash',
              f'python tools/caption_image.py {name} photo.jpg',
              f'python tools/test.py {name}  # the test set of its config;'
              ' yours with:',
              '#   --cfg-options test_dataloader.dataset.ann_file=TEST.json '
              'test_dataloader.dataset.feature_dir=FEATURES '
              'test_evaluator.ann_file=TEST_GT.json',
              '```', '', '```python',
              'from pcm_plugin.apis import ImageCaptioner',
              f"ImageCaptioner('{name}')('photo.jpg')", '```', '',
              _clip_line(manifest.get('clip_model') or {}, with_clip), '',
              '## Safe to accept?', '', _safety_line(one_file), '']
    return '\n'.join(lines)


def _training_lines(cfg: Config, manifest: dict, vocab_size: int,
                    num_concepts: Optional[int]) -> List[str]:
    train = (cfg.get('train_dataloader') or {}).get('dataset') or {}
    test = (cfg.get('test_dataloader') or {}).get('dataset') or {}
    lines = []
    if train:
        lines.append(f'training data: `{_name(train.get("ann_file"))}` '
                     f'({train.get("type", "?")})'
                     + _epochs(cfg.get('train_cfg') or {}))
    if test:
        lines.append(f'test data: `{_name(test.get("ann_file"))}` '
                     f'({test.get("type", "?")})')
    clip = manifest.get('clip_model') or {}
    if clip.get('name'):
        lines.append(f'CLIP: `{clip["name"]}`, features from its frozen '
                     'image tower')
    lines.append(f'vocabulary: {vocab_size} tokens' + (
        f'; concept bank: {num_concepts} concepts'
        if num_concepts is not None else '; no concept mix-up'))
    source = manifest.get('source') or {}
    lines.append('from: ' + ', '.join(
        f'{key} `{value}`' for key, value in source.items()
        if value is not None and not key.endswith('sha256')))
    return lines


def _decoding_line(model: dict) -> str:
    """Beam search, or beam candidates re-ranked by CLIP (and its cost)."""
    decoder = model.get('decoder') or {}
    beams = decoder.get('beam_size') or model.get('beam_size')
    search = f'beam search with {beams} beams' if beams else 'beam search'
    reranker = model.get('reranker')
    if not reranker:
        return f'{model.get("type", "?")}: {search}, the best beam returned.'
    return (f'{model.get("type", "?")}: beam search keeps '
            f'{reranker.get("num_candidates", 5)} finished candidates and '
            'returns the one with the best fusion of the image-caption '
            'cosine of its CLIP (text tower) and the length-normalised '
            f'log-probability (weight {reranker.get("weight")}, length '
            f'penalty {reranker.get("length_penalty", 1.0)}). Re-ranking '
            'costs test time (with 5 candidates, 1.8-1.9 times plain '
            "beam-3's per test iteration in pcm_plugin's mini worlds); "
            '`--cfg-options model.reranker=None` turns it off.')


def _epochs(train_cfg: dict) -> str:
    epochs = train_cfg.get('max_epochs')
    return f', {epochs} epochs' if epochs else ''


def _score_lines(metrics: Dict) -> List[str]:
    if not metrics:
        return ['None recorded (publish with `--metrics METRICS.json` from '
                '`tools/test.py --out METRICS.json`).']
    # tools/test.py --out writes the metric's numbers: ×100 (PAPER_SCALE).
    return ['As `tools/test.py --out` wrote them: caption metrics ×100, '
            'as papers report them.', '', '| metric | value |',
            '| --- | --- |'] + [
        f'| {key} | {value} |' for key, value in metrics.items()]


def _clip_line(clip: dict, with_clip: bool) -> str:
    if with_clip:
        return ('The release carries its CLIP: captioning images needs no '
                'other file.')
    return (f'Captioning images needs the CLIP that extracted the training '
            f'features (`{clip.get("name", "?")}`, weights '
            f'`{clip.get("checkpoint") or clip.get("pretrained") or "?"}`): '
            'pass `--clip-checkpoint` (or `clip_checkpoint=`) where it is '
            'not at the training path.')


def _safety_line(one_file: bool) -> str:
    if one_file:
        return ('Yes: a one-file release is data only (tensors, and a JSON '
                'config whose component types must be registered names); '
                'nothing in it runs when it is read.')
    return ('Only from people you trust: a folder release\'s `config.py` is '
            'Python and runs when it is loaded, as every OpenMMLab config '
            'does. To share a model with strangers, publish one file '
            '(`OUT.safetensors`).')


def _name(path) -> str:
    return osp.basename(osp.normpath(path)) if isinstance(path, str) else \
        str(path)


def read_model_card(release: str) -> str:
    """The card of a release: a folder's ``README.md``, or the metadata
    of a one-file release (nothing in either is executed).

    Raises:
        FileNotFoundError: ``release`` has no card (published before
            releases carried one).
    """
    if release.endswith('.safetensors') and osp.isfile(release):
        card = safetensors_metadata(release).get(MODEL_CARD_KEY)
    else:
        path = osp.join(release, CARD)
        card = open(path, encoding='utf-8').read() if osp.isfile(path) \
            else None
    if card is None:
        raise FileNotFoundError(f'{release} has no model card (published '
                                'before releases carried one)')
    return card
