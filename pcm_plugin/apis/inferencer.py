"""Caption any images the OpenMMLab way: an mmpretrain inferencer.

One path, as mmpretrain's inferencers take it: each image (a path, an RGB
array or a PIL image; a directory stands for its images) goes through the
config's test pipeline, its feature loading replaced by
:class:`~pcm_plugin.datasets.transforms.LoadCLIPImage`, and the batch
through the model, whose image encoder
(:class:`~pcm_plugin.models.OpenCLIPImageEncoder`) is the CLIP that
extracted the training features, running the code of
``tools/extract_features.py``. Batches run with a progress bar.
Optionally each result also names the concepts PCM retrieved for the
image and the patches it wrote them into.
"""
import copy
import math
import os
import warnings
from collections import Counter
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Union

import torch
from mmengine.config import Config
from mmengine.dataset import Compose, default_collate
from mmengine.runner import load_checkpoint
from mmpretrain.apis.base import BaseInferencer
from mmpretrain.structures import DataSample

from pcm_plugin.clip.image_io import (
    BadImageError,
    describe_skipped,
    expand_image_inputs,
)
from pcm_plugin.datasets.feature_layout import fill_feature_layout
from pcm_plugin.engine.checkpoint import check_checkpoint_matches
from pcm_plugin.engine.config_input import read_config
from pcm_plugin.models.pcm_mixup import FROM_WEIGHTS
from pcm_plugin.registry import MODELS, TRANSFORMS
from pcm_plugin.utils.progress import progress_bar

from .release import names_a_release, resolve_release

# The test pipeline's step that reads the model's inputs: the inferencer
# reads image files (or takes images) instead.
LOADERS = ('LoadCLIPFeatures', 'LoadCLIPImage')


def build_captioner(config: Union[str, Config], checkpoint: Optional[str]
                    ) -> tuple:
    """``(model, cfg)``: the model of ``config`` with ``checkpoint`` loaded
    after checking that it fits (a release folder brings both)."""
    if names_a_release(config):
        config, weights = resolve_release(config)
        checkpoint = checkpoint or weights
    if checkpoint is None:
        raise ValueError('a checkpoint is needed, or a released model '
                         'folder (tools/publish_model.py) as the model')
    cfg = config if isinstance(config, Config) else read_config(config)
    fill_feature_layout(cfg)
    model = MODELS.build(cfg.model)
    check_checkpoint_matches(model, checkpoint)
    load_checkpoint(model, checkpoint, map_location='cpu', logger='silent')
    model._config = cfg  # what mmpretrain's inferencers read
    return model.eval(), cfg


def clip_image_encoder(cfg: Config, weights: Optional[str], *,
                       clip_model: Optional[str] = None,
                       clip_checkpoint: Optional[str] = None,
                       clip_pretrained: Optional[str] = None,
                       model_config: Optional[str] = None) -> dict:
    """``model.image_encoder`` for the CLIP that extracted the training
    features: the config's ``clip_model``, with the caller's overrides.

    Args:
        cfg (Config): The model's config.
        weights (str, optional): The model's weights: the CLIP of a
            one-file release whose ``clip_model.checkpoint`` is
            ``'from_weights'`` (``--with-clip``) is read from them.
        clip_model, clip_checkpoint, clip_pretrained, model_config: As
            :class:`PCMCaptionInferencer` takes them.

    Returns:
        dict: An ``OpenCLIPImageEncoder`` config.
    """
    clip = cfg.get('clip_model') or {}
    name = clip_model or clip.get('name')
    if name is None:
        raise ValueError('which open_clip model extracted the features? '
                         'Pass clip_model (or --clip-model), or set '
                         '`clip_model = dict(name=..., checkpoint=...)` '
                         'in the config')
    encoder = dict(type='OpenCLIPImageEncoder', pool=clip.get('pool', 'auto'))
    checkpoint = None if clip_pretrained else \
        clip_checkpoint or clip.get('checkpoint')
    if checkpoint == FROM_WEIGHTS:  # a one-file release's own
        return dict(encoder, release=weights)
    return dict(encoder, name=name, checkpoint=checkpoint,
                pretrained=clip_pretrained,
                model_config=model_config or clip.get('model_config'))


class PCMCaptionInferencer(BaseInferencer):
    """Images to captions with a trained PCM-Net.

    Args:
        model (str | Config): The model's config, or a released model folder
            or file (``tools/publish_model.py``).
        pretrained (str, optional): The checkpoint (``.pth`` or
            ``.safetensors``); the release's weights when ``model`` is one.
        device (str): Torch device. Defaults to ``'cpu'``.
        clip_model (str, optional): open_clip model name. Defaults to the
            config's ``clip_model.name``.
        clip_checkpoint (str, optional): Local open_clip weights. Defaults to
            the config's ``clip_model.checkpoint``.
        clip_pretrained (str, optional): An open_clip tag in the local cache,
            instead of ``clip_checkpoint``.
        model_config (str, optional): open_clip JSON config of a custom
            model (e.g. the demo's mini CLIP).
        beam_size (int, optional): Overrides the decoder's beam size.

    Example:
        >>> inferencer = PCMCaptionInferencer('configs/pcm_coco.py',
        ...                                   'best.pth')
        >>> inferencer('photos/', batch_size=16, return_concepts=True)[0]
        {'pred_caption': 'a dog on a beach', 'input_index': 0,
         'image': 'photos/1.jpg', 'concepts': ['dog', ...],
         'mixed_patches': [3, 10, ...]}
    """

    preprocess_kwargs: set = {'skip_bad'}
    # forward computes the concepts only when asked; postprocess reports them
    forward_kwargs: set = {'return_concepts'}
    postprocess_kwargs: set = {'return_concepts'}

    def __init__(self, model: Union[str, Config],
                 pretrained: Optional[str] = None, *, device: str = 'cpu',
                 clip_model: Optional[str] = None,
                 clip_checkpoint: Optional[str] = None,
                 clip_pretrained: Optional[str] = None,
                 model_config: Optional[str] = None,
                 beam_size: Optional[int] = None) -> None:
        if names_a_release(model):
            model, weights = resolve_release(model)
            pretrained = pretrained or weights
        cfg = copy.deepcopy(model) if isinstance(model, Config) else \
            read_config(model)
        cfg.model.image_encoder = clip_image_encoder(
            cfg, pretrained, clip_model=clip_model,
            clip_checkpoint=clip_checkpoint,
            clip_pretrained=clip_pretrained, model_config=model_config)
        captioner, _ = build_captioner(cfg, pretrained)
        self.beam_size = beam_size
        self.skipped: List[tuple] = []
        super().__init__(captioner, pretrained=None, device=device)

    def _init_pipeline(self, cfg: Config) -> Callable:
        """The config's test pipeline, reading the image instead of its
        stored features: one input (``img_path``, or an in-memory
        ``rgb_image``) -> ``inputs`` ``images`` (3, I, I) and a data
        sample, preprocessed as the model's CLIP was."""
        test = cfg.get('test_dataloader') or {}
        steps = (test.get('dataset') or {}).get('pipeline') or \
            [dict(type='PackCaptionInputs')]
        load = dict(type='LoadCLIPImage',
                    preprocess=self.model.image_encoder.preprocess_cfg)
        return Compose([TRANSFORMS.build(step) for step in [load] + [
            step for step in steps if step['type'] not in LOADERS]])

    def preprocess(self, inputs: List, batch_size: int = 1,
                   skip_bad: bool = False) -> Iterator[dict]:
        """Collated batches of the pipeline's output: ``inputs`` with
        ``images`` (B, 3, I, I), and data samples whose ``image_id`` is
        the input's position (and ``img_path`` its file).

        An unreadable image stops the run with its name, or with
        ``skip_bad`` is left out and listed in :attr:`skipped`.
        """
        self.skipped = []

        def packed() -> Iterator[dict]:
            for index, image in enumerate(inputs):
                key = 'img_path' if isinstance(image, str) else 'rgb_image'
                try:
                    yield self.pipeline({'image_id': index, key: image})
                except BadImageError as err:
                    if not skip_bad:
                        raise
                    self.skipped.append((index, str(err)))
        yield from map(default_collate,
                       self._get_chunk_data(packed(), batch_size))

    @torch.no_grad()
    def encode_images(self, data: dict) -> Dict[str, torch.Tensor]:
        """The captioner's inputs for a batch from :meth:`preprocess`:
        ``patch_feats`` (B, N, Dv) and ``global_feat`` (B, Dg)."""
        images = self.model.data_preprocessor(data)['inputs']['images']
        return self.model.image_encoder(images)

    def features(self, images: Sequence) -> Dict[str, torch.Tensor]:
        """The captioner's inputs for ``images`` (paths, RGB arrays or PIL
        images), as one batch."""
        images = list(images)
        return self.encode_images(next(self.preprocess(
            images, batch_size=len(images))))

    @torch.no_grad()
    def forward(self, data: dict,
                return_concepts: bool = False) -> List[DataSample]:
        inputs = self.encode_images(data)
        captions = self.model.generate(inputs, beam_size=self.beam_size)
        mixup = self.model.mixup
        # The mix-up runs again for its selection only when it is asked for.
        details = mixup(inputs['patch_feats'], inputs['global_feat']) \
            if return_concepts and mixup.mode != 'none' else None
        samples = []
        for row, (packed, caption) in enumerate(
                zip(data['data_samples'], captions)):
            sample = DataSample(metainfo=dict(
                input_index=packed.image_id, image=packed.get('img_path')))
            sample.pred_caption = caption
            if details is not None:
                sample.set_field(details['concept_idx'][row].tolist(),
                                 'concept_idx', field_type='metainfo')
                sample.set_field(
                    details['replace_mask'][row].nonzero()[:, 0].tolist(),
                    'mixed_patches', field_type='metainfo')
            samples.append(sample)
        return samples

    def visualize(self, inputs: list, preds: List[DataSample],
                  **kwargs) -> None:
        return None

    def postprocess(self, preds: List[DataSample], visualization,
                    return_datasamples: bool = False,
                    return_concepts: bool = False) -> List:
        """One dict per readable input, in input order: ``pred_caption``,
        ``input_index``, ``image`` (its path, None for an in-memory image)
        and, with ``return_concepts``, ``concepts`` and ``mixed_patches``."""
        if return_datasamples:
            return preds
        words = self.model.mixup.concept_words
        results = []
        for sample in preds:
            result = dict(pred_caption=sample.pred_caption,
                          input_index=sample.input_index, image=sample.image)
            if return_concepts and 'concept_idx' in sample:
                result['concepts'] = [words[i] for i in sample.concept_idx]
                result['mixed_patches'] = list(sample.mixed_patches)
            results.append(result)
        return results

    def __call__(self, images, return_datasamples: bool = False,
                 batch_size: int = 16, **kwargs) -> List:
        """Caption ``images`` (a path, array, directory, or a list).

        Args:
            images: The images.
            return_datasamples (bool): Return ``DataSample`` objects.
            batch_size (int): Images per batch. Defaults to 16.
            skip_bad (bool): Leave unreadable images out (listed in
                :attr:`skipped`) instead of stopping. Defaults to False.
            return_concepts (bool): Add the retrieved concept words and the
                indices of the patches PCM mixed. Defaults to False.

        Returns:
            list: One result per readable image, in input order; each
            dict's ``input_index`` says which input it belongs to, and
            ``image`` which file (None for an array or PIL image).
        """
        if batch_size < 1:
            raise ValueError(f'batch_size must be at least 1, got '
                             f'{batch_size}')
        (preprocess_kwargs, forward_kwargs, _,
         postprocess_kwargs) = self._dispatch_kwargs(**kwargs)
        inputs = self._inputs_to_list(images)
        preds = []
        # mmpretrain's loop draws its bar on stdout, where the results go.
        with progress_bar(total=math.ceil(len(inputs) / batch_size),
                          desc='captioning', unit='batch') as bar:
            for data in self.preprocess(inputs, batch_size=batch_size,
                                        **preprocess_kwargs):
                preds.extend(self.forward(data, **forward_kwargs))
                bar.update()
        return self.postprocess(preds, None, return_datasamples,
                                **postprocess_kwargs)

    def _inputs_to_list(self, inputs) -> list:
        """A list of images; a directory stands for its image files (the
        other files of a directory are counted in a warning)."""
        if not isinstance(inputs, (list, tuple)):
            inputs = [inputs]  # one path, folder, array or PIL image
        inputs = [os.fspath(entry) if isinstance(entry, os.PathLike)
                  else entry for entry in inputs]
        left_out = Counter()
        items = [item for entry in inputs for item in (
            expand_image_inputs([entry], left_out) if isinstance(entry, str)
            else [entry])]
        if left_out:
            warnings.warn(describe_skipped(left_out))
        return items

