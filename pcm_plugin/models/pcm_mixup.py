"""Patch-wise Cross-modal feature Mix-up (PCM), docs/method.md §3.1-3.5 and §4.

Synthetic images get their salient regions wrong, and those are exactly the
regions a caption talks about. PCM finds the image's salient concepts in CLIP
space and, for the patches that match them best, swaps the visual token for
a "textual patch" built from the concepts' CLIP text embeddings: in training
the visual token is *replaced*; on real test images the textual tokens are
*appended* so nothing visual is lost.

The selection maths is the pure function :func:`salient_patch_mixup` (in
``mixup_selection.py``); the registered :class:`PCMMixup` adds the frozen
CLIP head, the concept bank, the trainable token embedding (projections,
positions, token types) and CapDec noise on the global token.
"""
import json
import os.path as osp
from contextlib import contextmanager
from importlib import resources
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import nn

from pcm_plugin.registry import MODELS

from .clip_head import FrozenCLIPHead
from .concept_bank import load_concept_bank
from .mixup_selection import (
    SELECTIONS,
    salient_patch_mixup,
    unit,
    writable_concepts,
)

MODES = ('top', 'random', 'none')
# A file setting (tokenizer, concept bank, CLIP head) whose content comes
# with the weights loaded later: single-file releases and zoo configs.
FROM_WEIGHTS = 'from_weights'
BANK_WORDS_KEY = 'concept_bank.words_json'  # uint8 UTF-8 JSON list
BANK_EMBEDS_KEY = 'concept_bank.embeds'  # (C, Dg)
# The stuff words of COCO's 446-word bank, shipped with the package.
COCO_STUFF_WORDS = 'coco_stuff_words.txt'


def read_word_list(source: Union[str, Sequence[str]]) -> Tuple[str, ...]:
    """Words from a list, or from a text file of one word a line.

    Args:
        source (str | Sequence[str]): The words; or a file path, or the
            name of a file in ``pcm_plugin/resources/`` (e.g.
            :data:`COCO_STUFF_WORDS`). In a file, ``#`` starts a comment
            and blank lines are skipped.

    Returns:
        tuple[str]: The words, in their order.
    """
    if not isinstance(source, str):
        return tuple(source)
    if osp.isfile(source):
        with open(source, encoding='utf-8') as f:
            text = f.read()
    else:
        packaged = resources.files('pcm_plugin').joinpath(
            'resources', source)
        if not packaged.is_file():
            raise FileNotFoundError(
                f'word list {source!r} is neither a file nor one of '
                "pcm_plugin/resources/ (e.g. 'coco_stuff_words.txt')")
        text = packaged.read_text(encoding='utf-8')
    lines = (line.split('#', 1)[0].strip() for line in text.splitlines())
    return tuple(line for line in lines if line)


@contextmanager
def _off_global_stream():
    """Initialise modules without advancing the global RNG.

    The mix-up's own modules (text projection, CLIP head) draw from a
    stream derived from the run's seed, so a model with the mix-up and one
    without it (``mode='none'``, the Base model) built with the same seed
    share every other initial weight, the data order and every dropout and
    noise draw: ablations compare them as pairs (common random numbers, as
    the mini-world benchmark does).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(torch.initial_seed() ^ 0x7E47)
        yield


def _check_layout_set(**layout: Optional[int]) -> None:
    """Refuse unset feature-layout keys, naming all of them and where
    their values are (a model built without the tools)."""
    unset = [key for key, value in layout.items() if value is None]
    if unset:
        raise ValueError(
            f'model.mixup.{", ".join(unset)} not set: tools/train.py, '
            'tools/test.py and tools/caption_image.py read them from the '
            "config's feature stores; building the model yourself, call "
            'pcm_plugin.datasets.feature_layout.fill_feature_layout(cfg) '
            'first, or set them in the config')


@MODELS.register_module()
class PCMMixup(BaseModule):
    """PCM token embedding: salient concept detection + patch mix-up.

    Builds the visual-semantic token sequence the encoder consumes
    (``VisualGridClipTagLREmbedding`` in the official code):

    * training (``self.training``): ``[g, v_1 .. v_N]`` where each selected
      patch token is *replaced* by its textual token, type id 1 marking it;
    * evaluation: ``[g, v_1 .. v_N, t_1 .. t_N]``: all textual tokens are
      appended with their patch's position; the selected ones get type id 1
      and are the only ones visible to attention (``token_mask``; the
      others keep type 0 and are masked out).

    Every token is ``ReLU(proj + position + type)``, then LayerNorm and
    dropout (0.5 in the official configs). The global token gets CapDec
    noise (variance 0.016 on the unit feature) in training only; concept
    retrieval always uses the clean global feature. Follows the official
    code where it differs from the paper: top-M counts (patch, concept) pairs
    and at test time textual tokens are appended (docs/method.md §9).

    Args:
        patch_dim (int): Dv, raw patch token width (768 for ViT-B/32).
        global_dim (int): Dg, CLIP embedding width (512 for ViT-B/32).
        num_patches (int): N (49 for ViT-B/32, 64 for pooled ViT-L/14).
            The three may be left None in a config: the tools fill them
            from the feature stores' ``index.json``
            (:func:`~pcm_plugin.datasets.feature_layout.fill_feature_layout`)
            before the model is built.
        embed_dim (int): Model width d. Defaults to 512.
        concept_bank (str, optional): Concept bank ``.npz``. Kept in a
            non-persistent buffer (not in training checkpoints) so it can
            be swapped at test time with :meth:`set_concept_bank`. Required
            unless ``mode='none'``; ``'from_weights'`` takes it from the
            weights loaded later (a single-file release carries it), and a
            bank given as a file wins over one in the weights.
        clip_head (str, optional): open_clip checkpoint (or head file) with
            ``visual.ln_post`` and ``visual.proj`` of the CLIP that
            extracted the features. Required unless ``mode='none'``;
            ``'from_weights'``: the head's tensors come with the weights
            (every checkpoint holds them).
        mode (str): ``'top'`` (PCM), ``'random'`` (replace each patch with
            probability ``random_prob`` in training, append all N textual
            tokens at test) or ``'none'`` (no mix-up: the Base model).
        top_k (int): Concepts per image. Defaults to 5.
        top_m (float): (patch, concept) pairs mixed. Defaults to 5.
        temperature (float): Softmax temperature. Defaults to 0.01.
        threshold (float): Concept probability threshold. Defaults to 0.0.
        random_prob (float): Replacement probability of ``'random'`` mode.
        noise_var (float): CapDec noise variance on the training global
            token; 0 disables it. Defaults to 0.016.
        dropout (float): Dropout after the LayerNorm. Defaults to 0.5.
        norm_eps (float): Epsilon of the token LayerNorm. Defaults to
            1e-5, PyTorch's default, as the official code (unlike the
            encoder's and decoder's BERT layers, which use 1e-12).
        eval_mode (str): ``'append'`` (official) or ``'replace'`` (use the
            training layout on test images too, for ablations).
        zero_textual (bool): Diagnostic ablation, not the method: keep the
            selection (and the token types) but make every textual patch
            zero, so a selected token carries no concept content. Defaults
            to False.
        selection (str): Which patches ``mode='top'`` mixes, in training
            (replaced) and at test (appended) alike; the other modes ignore
            it (so a checkpoint can be re-tested with ``mode='none'``).
            ``'official'`` (the default) is the official code's behaviour:
            the top-M (patch, concept) pairs of all N*K. ``'per_concept'``
            is ours, beyond the paper: each retrieved concept writes its
            own vector into one patch of its own, at most one concept per
            patch, so at most min(M, K) patches
            (``mixup_selection.per_concept_pairs``).
        excluded_words (str | Sequence[str], optional): Ours, beyond the
            paper: bank words still retrieved (they keep their K slots)
            but never written: no pair selects them and no textual patch
            mixes them, under either rule. A list of words, a word-list
            file, or ``'coco_stuff_words.txt'`` for the COCO bank's
            background words (:func:`read_word_list`); words absent from
            the bank are ignored. Defaults to None (the official code's:
            every word may be written).
        init_cfg (dict, optional): mmengine init config.
    """

    def __init__(self, *, patch_dim: Optional[int] = None,
                 global_dim: Optional[int] = None,
                 num_patches: Optional[int] = None, embed_dim: int = 512,
                 concept_bank: Optional[str] = None,
                 clip_head: Optional[str] = None, mode: str = 'top',
                 top_k: int = 5, top_m: float = 5, temperature: float = 0.01,
                 threshold: float = 0.0, random_prob: float = 0.5,
                 noise_var: float = 0.016, dropout: float = 0.5,
                 norm_eps: float = 1e-5, eval_mode: str = 'append',
                 zero_textual: bool = False, selection: str = 'official',
                 excluded_words: Optional[Union[str, Sequence[str]]] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        _check_layout_set(patch_dim=patch_dim, global_dim=global_dim,
                          num_patches=num_patches)
        if mode not in MODES:
            raise ValueError(f'PCMMixup.mode must be one of {MODES}, '
                             f'got {mode!r}')
        if eval_mode not in ('append', 'replace'):
            raise ValueError("PCMMixup.eval_mode must be 'append' or "
                             f"'replace', got {eval_mode!r}")
        if selection not in SELECTIONS:
            raise ValueError(f'PCMMixup.selection must be one of '
                             f'{tuple(SELECTIONS)}, got {selection!r}')
        self.patch_dim, self.global_dim = patch_dim, global_dim
        self.num_patches = num_patches
        self.mode, self.eval_mode = mode, eval_mode
        self.top_k, self.top_m = top_k, top_m
        self.temperature, self.threshold = temperature, threshold
        self.random_prob, self.noise_var = random_prob, noise_var
        self.zero_textual = zero_textual
        self.selection = selection
        # None, not an empty tuple, is the official code's setting: the
        # selection then runs exactly as before the option existed.
        self.excluded_words = (None if excluded_words is None
                               else read_word_list(excluded_words))
        self.concept_writable: Optional[torch.Tensor] = None  # (C,) bool

        self.patch_proj = nn.Linear(patch_dim, embed_dim)
        # Built only where a mode uses it: an unused parameter breaks DDP
        # with find_unused_parameters=False (and would be dead weight).
        self.text_proj = None
        if mode != 'none':
            with _off_global_stream():
                self.text_proj = nn.Linear(global_dim, embed_dim)
        self.global_proj = nn.Linear(global_dim, embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1,
                                                  embed_dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.type_embed = nn.Embedding(2, embed_dim)
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps)
        self.drop = nn.Dropout(dropout)

        self.concept_words = []
        self.register_buffer('concept_embeds', torch.zeros(0, global_dim),
                             persistent=False)
        if mode != 'none':
            for key, value in (('concept_bank', concept_bank),
                               ('clip_head', clip_head)):
                if value is None:
                    raise ValueError(
                        f'PCMMixup(mode={mode!r}) needs `{key}`: set it in '
                        "the model config, or use mode='none' for a model "
                        'without mix-up')
            with _off_global_stream():
                self.clip_head = FrozenCLIPHead(patch_dim=patch_dim,
                                                global_dim=global_dim)
            if clip_head != FROM_WEIGHTS:
                self.clip_head.load_from_file(clip_head)
            if concept_bank != FROM_WEIGHTS:
                self.set_concept_bank(concept_bank)
        self._bank_from_weights = concept_bank == FROM_WEIGHTS
        self._register_load_state_dict_pre_hook(self._take_bank_from_state)

    def _take_bank_from_state(self, state_dict, prefix, *args) -> None:
        """Consume a concept bank carried by the weights (single-file
        releases); it is used only when the config asked for it."""
        words = state_dict.pop(prefix + BANK_WORDS_KEY, None)
        embeds = state_dict.pop(prefix + BANK_EMBEDS_KEY, None)
        if words is None or embeds is None or not self._bank_from_weights:
            return
        self.set_concept_bank((
            json.loads(bytes(words.tolist()).decode('utf-8')),
            embeds.float().numpy()))

    def bank_state(self) -> Dict[str, torch.Tensor]:
        """The concept bank as tensors, to carry inside released weights
        (keys relative to this module)."""
        words = json.dumps(self.concept_words).encode('utf-8')
        return {BANK_WORDS_KEY: torch.tensor(list(words), dtype=torch.uint8),
                BANK_EMBEDS_KEY: self.concept_embeds.detach().cpu().clone()}

    def set_concept_bank(self, bank: Union[str, Tuple[list, np.ndarray]]
                         ) -> None:
        """Swap the concept vocabulary (e.g. for cross-domain testing).

        Args:
            bank (str | tuple): A concept bank path, or ``(words, embeds)``.
        """
        if isinstance(bank, str):
            words, embeds, _ = load_concept_bank(bank)
            source = bank
        else:
            (words, embeds), source = bank, 'the given concept bank'
        embeds = torch.as_tensor(np.asarray(embeds), dtype=torch.float32)
        if embeds.shape[1] != self.global_dim:
            raise ValueError(
                f'{source}: concept embeddings are {embeds.shape[1]}-d but '
                f'the model\'s global_dim is {self.global_dim}; use the bank '
                'encoded with the same CLIP as the features (e.g. ViT-B/32 -> '
                '512, ViT-L/14 -> 768)')
        if embeds.shape[0] < self.top_k:
            raise ValueError(f'{source}: {embeds.shape[0]} concepts, fewer '
                             f'than top_k={self.top_k}')
        self.concept_words = list(words)
        self.concept_embeds = embeds.to(self.pos_embed.device)
        if self.excluded_words is not None:
            if self.excluded_words and not set(self.excluded_words) & set(
                    self.concept_words):
                # Some may be missing (one list serves several banks);
                # all missing is a list meant for another bank.
                raise ValueError(
                    f'{source}: none of the {len(self.excluded_words)} '
                    'excluded_words is a word of this concept bank '
                    f'(e.g. {self.excluded_words[0]!r}); the list is for '
                    'another bank')
            # A plain attribute, not a buffer: checkpoints stay as they were.
            self.concept_writable = writable_concepts(
                self.concept_words, self.excluded_words).to(
                    self.pos_embed.device)  # (C,)

    def selection_settings(self) -> Dict:
        """The keyword arguments of
        :func:`~pcm_plugin.models.mixup_selection.salient_patch_mixup` and
        ``select_pairs`` this module selects with (figures and diagnostics
        recompute its pairs with them)."""
        return dict(top_k=self.top_k, top_m=self.top_m,
                    temperature=self.temperature, threshold=self.threshold,
                    selection=self.selection,
                    writable=self.concept_writable)

    def _check_inputs(self, patch_feats: torch.Tensor,
                      global_feat: torch.Tensor) -> None:
        expected = (self.num_patches, self.patch_dim)
        if tuple(patch_feats.shape[1:]) != expected:
            raise ValueError(
                f'patch features have shape {tuple(patch_feats.shape[1:])} '
                f'per image but PCMMixup expects (num_patches, patch_dim) = '
                f'{expected}: the features and the model config come from '
                'different CLIP backbones (ViT-B/32: 49x768, ViT-L/14: '
                '64x1024)')
        if global_feat.shape[-1] != self.global_dim:
            raise ValueError(
                f'global features are {global_feat.shape[-1]}-d but '
                f'PCMMixup.global_dim is {self.global_dim}')

    def _global_token(self, global_feat: torch.Tensor) -> torch.Tensor:
        g = unit(global_feat)  # (B, Dg)
        if self.training and self.noise_var > 0:
            g = unit(g + torch.randn_like(g) * self.noise_var ** 0.5)
        return self.global_proj(g)[:, None]  # (B, 1, d)

    def _select(self, patch_feats: torch.Tensor, global_feat: torch.Tensor):
        """Textual patches and replace mask (no gradient: fixed decisions)."""
        if len(self.concept_embeds) == 0:
            raise RuntimeError(
                "PCMMixup has no concept bank: with concept_bank='"
                f"{FROM_WEIGHTS}' it comes with the weights, so load a "
                'single-file release first (or set model.mixup.concept_bank)')
        B, N, _ = patch_feats.shape
        # The choices (top-K concepts, top-M pairs) rank cosines scaled by
        # 1 / temperature = 100: under autocast, bfloat16's 3 significant
        # digits would flip them. A few small matmuls: float32 always.
        with torch.no_grad(), torch.autocast(patch_feats.device.type,
                                             enabled=False):
            textual, mask, concept_idx = salient_patch_mixup(
                self.clip_head(patch_feats), global_feat, self.concept_embeds,
                **self.selection_settings())
            if self.zero_textual:
                textual = torch.zeros_like(textual)  # (B, N, Dg)
            if self.mode == 'random':
                if self.training:
                    mask = torch.rand(B, N, device=mask.device) < \
                        self.random_prob  # (B, N)
                else:
                    mask = torch.ones_like(mask)  # all textual tokens visible
        return textual, mask, concept_idx

    def forward(self, patch_feats: torch.Tensor,
                global_feat: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Build the token sequence.

        Args:
            patch_feats (Tensor): (B, N, Dv) raw CLIP patch tokens.
            global_feat (Tensor): (B, Dg) CLIP image embeddings.

        Returns:
            dict: ``tokens`` (B, L, d); ``token_mask`` (B, L) bool, True =
            visible; ``replace_mask`` (B, N) bool; ``concept_idx`` (B, K).
            L = 1 + N in training (and ``mode='none'``), 1 + 2N at eval.
        """
        self._check_inputs(patch_feats, global_feat)
        B, N, _ = patch_feats.shape
        glob = self._global_token(global_feat)  # (B, 1, d)
        visual = self.patch_proj(patch_feats)  # (B, N, d)
        if self.mode == 'none':
            mask = torch.zeros(B, N, dtype=torch.bool,
                               device=patch_feats.device)
            tokens = torch.cat([glob, visual], dim=1) + self.pos_embed
            concept_idx = None
            types = torch.zeros(B, N + 1, dtype=torch.long,
                                device=patch_feats.device)
        else:
            textual, mask, concept_idx = self._select(patch_feats, global_feat)
            textual = self.text_proj(textual)  # (B, N, d)
            if self.training or self.eval_mode == 'replace':
                mixed = torch.where(mask[..., None], textual, visual)
                tokens = torch.cat([glob, mixed], dim=1) + self.pos_embed
                types = F.pad(mask.long(), (1, 0))  # (B, 1 + N)
            else:
                pos = torch.cat([self.pos_embed, self.pos_embed[:, 1:]], 1)
                tokens = torch.cat([glob, visual, textual], dim=1) + pos
                types = F.pad(mask.long(), (N + 1, 0))  # (B, 1 + 2N)
        visible = torch.ones(B, N + 1, dtype=torch.bool,
                             device=patch_feats.device)
        if tokens.shape[1] > N + 1:
            visible = torch.cat([visible, mask], dim=1)  # (B, 1 + 2N)
        tokens = self.drop(self.norm(F.relu(tokens + self.type_embed(types))))
        return dict(tokens=tokens, token_mask=visible, replace_mask=mask,
                    concept_idx=concept_idx)
