"""Caption any images the OpenMMLab way: an mmpretrain inferencer.

Images (paths, RGB arrays, PIL images, or a directory) go through the CLIP
that extracted the training features — the same code as
``tools/extract_features.py`` — and a trained PCM-Net, in batches with a
progress bar. Optionally each result also names the concepts PCM retrieved
for the image and the patches it wrote them into.
"""
import math
import os
from typing import Callable, Iterator, List, Optional, Union

import numpy as np
import torch
from mmengine.config import Config
from mmpretrain.apis.base import BaseInferencer
from mmpretrain.structures import DataSample

from .release import load_release_clip, names_a_release, resolve_release


def build_captioner(config: Union[str, Config], checkpoint: Optional[str]
                    ) -> tuple:
    """``(model, cfg)``: the model of ``config`` with ``checkpoint`` loaded
    after checking that it fits (a release folder brings both)."""
    from mmengine.runner import load_checkpoint

    import pcm_plugin  # noqa: F401  registers the components
    from pcm_plugin.datasets.feature_layout import fill_feature_layout
    from pcm_plugin.engine.checkpoint import check_checkpoint_matches
    from pcm_plugin.engine.config_input import read_config
    from pcm_plugin.registry import MODELS
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


class PCMCaptionInferencer(BaseInferencer):
    """Images to captions with a trained PCM-Net.

    Args:
        model (str | Config): The model's config, or a released model folder
            (``tools/publish_model.py``).
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
        from pcm_plugin.clip.clip_features import (
            load_open_clip,
            resolve_pool,
        )
        from pcm_plugin.models.pcm_mixup import FROM_WEIGHTS
        if names_a_release(model):
            model, weights = resolve_release(model)
            pretrained = pretrained or weights
        captioner, cfg = build_captioner(model, pretrained)
        clip_cfg = cfg.get('clip_model', {}) or {}
        clip_model = clip_model or clip_cfg.get('name')
        if clip_model is None:
            raise ValueError('which open_clip model extracted the features? '
                             'Pass clip_model (or --clip-model), or set '
                             '`clip_model = dict(name=..., checkpoint=...)` '
                             'in the config')
        if not clip_pretrained:
            clip_checkpoint = clip_checkpoint or clip_cfg.get('checkpoint')
        if clip_checkpoint == FROM_WEIGHTS:  # a one-file release's own
            self.clip, self.clip_preprocess = load_release_clip(
                pretrained, device=device)
        else:
            self.clip, self.clip_preprocess, _ = load_open_clip(
                clip_model, checkpoint=clip_checkpoint,
                pretrained=clip_pretrained,
                model_config=model_config or clip_cfg.get('model_config'),
                device=device)
        self.pool = resolve_pool(tuple(self.clip.visual.grid_size),
                                 clip_cfg.get('pool', 'auto'))
        self.device, self.beam_size = device, beam_size
        self.skipped: List[tuple] = []
        super().__init__(captioner, pretrained=None, device=device)

    def _init_pipeline(self, cfg: Config) -> Callable:
        """One image (path, RGB array or PIL) -> CLIP's input tensor."""
        from pcm_plugin.clip.image_io import load_rgb_image

        def pipeline(image) -> torch.Tensor:
            if isinstance(image, str):
                image = load_rgb_image(image)
            elif isinstance(image, np.ndarray):
                from PIL import Image
                if image.ndim != 3 or image.shape[2] != 3:
                    raise ValueError(f'an image array must be (H, W, 3) '
                                     f'RGB, got shape {image.shape}')
                image = Image.fromarray(image.astype(np.uint8))
            else:
                image = image.convert('RGB')
            return self.clip_preprocess(image)  # (3, I, I)
        return pipeline

    def preprocess(self, inputs: List, batch_size: int = 1,
                   skip_bad: bool = False) -> Iterator[dict]:
        """Batches of ``images`` (B, 3, I, I), their input positions
        (``index``) and file paths (``paths``, None for in-memory images).

        An unreadable image stops the run with its name, or with
        ``skip_bad`` is left out and listed in :attr:`skipped`.
        """
        from pcm_plugin.clip.image_io import BadImageError
        self.skipped = []
        batch, where, paths = [], [], []
        for index, image in enumerate(inputs):
            try:
                batch.append(self.pipeline(image))
            except BadImageError as err:
                if not skip_bad:
                    raise
                self.skipped.append((index, str(err)))
                continue
            where.append(index)
            paths.append(image if isinstance(image, str) else None)
            if len(batch) == batch_size:
                yield dict(images=torch.stack(batch), index=where,
                           paths=paths)
                batch, where, paths = [], [], []
        if batch:
            yield dict(images=torch.stack(batch), index=where, paths=paths)

    @torch.no_grad()
    def clip_features(self, images: torch.Tensor) -> dict:
        """CLIP inputs of the captioner for a preprocessed batch."""
        from pcm_plugin.clip.clip_features import extract_batch
        patch, global_feat = extract_batch(self.clip, images.to(self.device),
                                           pool=self.pool)
        return dict(patch_feats=patch.to(self.device),
                    global_feat=global_feat.to(self.device))

    @torch.no_grad()
    def forward(self, data: dict,
                return_concepts: bool = False) -> List[DataSample]:
        inputs = self.clip_features(data['images'])
        captions = self.model.generate(inputs, beam_size=self.beam_size)
        mixup = self.model.mixup
        # The mix-up runs again for its selection only when it is asked for.
        details = mixup(inputs['patch_feats'], inputs['global_feat']) \
            if return_concepts and mixup.mode != 'none' else None
        samples = []
        for row, (index, path, caption) in enumerate(
                zip(data['index'], data['paths'], captions)):
            sample = DataSample(metainfo=dict(input_index=index, image=path))
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
        from pcm_plugin.utils.progress import progress_bar
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
        import warnings
        from collections import Counter

        from pcm_plugin.clip.image_io import (
            describe_skipped,
            expand_image_inputs,
        )
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

