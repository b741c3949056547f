"""Caption any image with one call: ``ImageCaptioner(config, ckpt)(paths)``.

A thin face of :class:`~.inferencer.PCMCaptionInferencer` that returns the
captions as strings. The features are computed exactly as
``tools/extract_features.py`` computes them for the test sets (patch tokens
before ``ln_post``, pooled for ViT-L/14, and the projected global
embedding), so a model sees the same inputs it was evaluated on.
"""
from typing import List, Optional, Union

from mmengine.config import Config

from .inferencer import PCMCaptionInferencer


class ImageCaptioner(PCMCaptionInferencer):
    """Load a PCM-Net checkpoint and the CLIP it was trained with.

    Args:
        config (str | Config): The model's config (e.g.
            ``configs/pcm_coco.py``), or a released model folder
            (``tools/publish_model.py``).
        checkpoint (str, optional): A checkpoint written by
            ``tools/train.py`` (``.pth``) or a release's ``.safetensors``.
            Defaults to the release's weights when ``config`` is a folder.
        clip_model (str, optional): open_clip model name. Defaults to the
            config's ``clip_model.name``.
        clip_checkpoint (str, optional): Local open_clip weights. Defaults
            to the config's ``clip_model.checkpoint``.
        pretrained (str, optional): An open_clip tag already in the local
            cache, instead of ``clip_checkpoint``.
        model_config (str, optional): open_clip JSON config of a custom
            model (e.g. the mini CLIP of the demo).
        device (str): Torch device. Defaults to ``'cpu'``.
        beam_size (int, optional): Overrides the decoder's beam size.

    Example:
        >>> captioner = ImageCaptioner('configs/pcm_coco.py', 'best.pth')
        >>> captioner(['demo/dog.jpg'])
        ['a dog running on the beach']
    """

    def __init__(self, config: Union[str, Config],
                 checkpoint: Optional[str] = None, *,
                 clip_model: Optional[str] = None,
                 clip_checkpoint: Optional[str] = None,
                 pretrained: Optional[str] = None,
                 model_config: Optional[str] = None, device: str = 'cpu',
                 beam_size: Optional[int] = None):
        super().__init__(config, checkpoint, device=device,
                         clip_model=clip_model,
                         clip_checkpoint=clip_checkpoint,
                         clip_pretrained=pretrained,
                         model_config=model_config, beam_size=beam_size)

    def __call__(self, images, batch_size: int = 16) -> List[str]:
        """Captions, in input order, for one image (a path, a folder of
        images, an RGB array or a PIL image) or a list of them."""
        results = super().__call__(images, batch_size=batch_size)
        return [r['pred_caption'] for r in results]
