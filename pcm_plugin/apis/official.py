"""Official PCM-Net checkpoints (X-modaler ``.pth``) as this plugin's releases.

The official files are ``torch.save`` dicts with ``model`` (a state dict
with X-modaler's names), ``trainer`` and ``iteration``; the word vocabulary
(``vocabulary.txt``, one word per line) and the concept bank come separately.
:func:`convert_official_state` renames every tensor to this plugin's modules
(one table, :func:`official_names`), and re-lays the vocabulary rows: the
official ids are ``0 = '.'`` (BOS/EOS) and words from 1, while this plugin
reserves ids 1 and 2 for ``[UNK]``/``[PAD]``. So official id ``j >= 1``
becomes ``j + 2``, and the two reserved rows get a zero embedding and a
zero predictor row with bias :data:`NEVER` (probability exactly 0 in
float32): the converted model's next-word distribution over the official
words equals the official model's.
"""
import math
import os
import os.path as osp
import tempfile
from typing import Dict, Optional

import torch

from pcm_plugin.data_prep.official_bank import read_official_bank
from pcm_plugin.data_prep.official_records import read_official_vocabulary
from pcm_plugin.engine.checkpoint import load_local_checkpoint
from pcm_plugin.engine.config_input import read_config
from pcm_plugin.models.concept_bank import load_concept_bank, save_concept_bank
from pcm_plugin.models.pcm_mixup import FROM_WEIGHTS
from pcm_plugin.models.tokenizer import (
    PAD_ID,
    UNK_ID,
    save_tokenizer,
    tokenizer_from_official_words,
)
from pcm_plugin.registry import MODELS

from .release import write_release

NEVER = -1e4  # predictor bias of [UNK]/[PAD]: exp(-1e4) is 0 in float32


def official_names(num_encoder_layers: int, num_decoder_layers: int
                   ) -> Dict[str, str]:
    """Official tensor name -> this plugin's, for every learned tensor
    (weights and biases; LayerNorms by their ``weight``/``bias``)."""
    pairs = {
        'visual_embed.embeddings': 'mixup.patch_proj',
        'visual_embed.g_embeddings': 'mixup.global_proj',
        'visual_embed.t_embeddings': 'mixup.text_proj',
        'visual_embed.embeddings_norm': 'mixup.norm',
        'visual_embed.ln_post': 'mixup.clip_head.ln_post',
        'encoder.gvfeat_embed.0': 'encoder.global_fuse',
        'encoder.gvfeat_embed.1': 'encoder.global_norm',
        'token_embed.embeddings_norm': 'decoder.embed_norm',
    }
    for i in range(num_encoder_layers):
        official, ours = f'encoder.layers.{i}', f'encoder.layers.{i}'
        pairs.update({
            f'{official}.attention.self.query': f'{ours}.attn.q_proj',
            f'{official}.attention.self.key': f'{ours}.attn.k_proj',
            f'{official}.attention.self.value': f'{ours}.attn.v_proj',
            f'{official}.attention.output.dense': f'{ours}.attn.out_proj',
            f'{official}.attention.output.LayerNorm': f'{ours}.attn_norm',
            f'{official}.intermediate.dense': f'{ours}.ffn.net.0',
            f'{official}.output.dense': f'{ours}.ffn.net.3',
            f'{official}.output.LayerNorm': f'{ours}.ffn_norm'})
    for i in range(num_decoder_layers):
        official, ours = f'decoder.g_layers.{i}', f'decoder.layers.{i}'
        for theirs, mine, norm in (('self_attn', 'self_attn', 'norm_self'),
                                   ('x_att', 'cross_attn', 'norm_cross')):
            pairs.update({
                f'{official}.{theirs}.self.query': f'{ours}.{mine}.q_proj',
                f'{official}.{theirs}.self.key': f'{ours}.{mine}.k_proj',
                f'{official}.{theirs}.self.value': f'{ours}.{mine}.v_proj',
                f'{official}.{theirs}.output.dense':
                    f'{ours}.{mine}.out_proj',
                f'{official}.{theirs}.output.LayerNorm': f'{ours}.{norm}'})
        pairs.update({
            f'{official}.intermediate.dense': f'{ours}.ffn.net.0',
            f'{official}.output.dense': f'{ours}.ffn.net.3',
            f'{official}.output.LayerNorm': f'{ours}.norm_ffn'})
    names = {f'{a}.{p}': f'{b}.{p}' for a, b in pairs.items()
             for p in ('weight', 'bias')}
    names.update({
        'visual_embed.embeddings_pos': 'mixup.pos_embed',
        'visual_embed.embeddings_token_type.weight': 'mixup.type_embed.weight',
        'visual_embed.proj': 'mixup.clip_head.proj'})
    return names


def _layer_count(state: Dict[str, torch.Tensor], prefix: str) -> int:
    found = {int(k[len(prefix):].split('.')[0]) for k in state
             if k.startswith(prefix)}
    return max(found) + 1 if found else 0


def official_sinusoid(num_positions: int, dim: int,
                      max_len: int = 5000) -> torch.Tensor:
    """The official ``SinusoidEncoding`` table: base ``2 * max_len``."""
    pos = torch.arange(num_positions, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2).float()
                     * -(math.log(max_len * 2.0) / dim))
    table = torch.zeros(num_positions, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)
    return table


def _remap_rows(rows: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
    """(V, ...) official rows -> (V + 2, ...): row 0 stays, rows 1.. move
    to 3.., rows 1 and 2 ([UNK], [PAD]) are ``fill``."""
    out = torch.full((rows.shape[0] + 2, *rows.shape[1:]), fill,
                     dtype=rows.dtype)
    out[0] = rows[0]
    out[3:] = rows[1:]
    return out


def convert_official_state(official: Dict[str, torch.Tensor]
                           ) -> Dict[str, torch.Tensor]:
    """This plugin's state dict from an official one (``ckpt['model']``).

    Raises:
        ValueError: naming official tensors that map nowhere, or a position
            table that is not the official sinusoid.
    """
    official = {k[len('module.'):] if k.startswith('module.') else k: v
                for k, v in official.items()}
    names = official_names(_layer_count(official, 'encoder.layers.'),
                           _layer_count(official, 'decoder.g_layers.'))
    state = {names[k]: v for k, v in official.items() if k in names}
    vocab = {
        'token_embed.embeddings.weight': ('decoder.word_embed.weight', 0.0),
        'predictor.logits.weight': ('decoder.predictor.1.weight', 0.0),
        'predictor.logits.bias': ('decoder.predictor.1.bias', NEVER)}
    for key, (ours, fill) in vocab.items():
        state[ours] = _remap_rows(official[key], fill)
    pe = official.get('token_embed.embeddings_pos.pe')
    if pe is not None:
        expected = official_sinusoid(pe.shape[1], pe.shape[2])
        if not torch.allclose(pe[0].float(), expected, atol=1e-5):
            raise ValueError('token_embed.embeddings_pos.pe is not the '
                             'official sinusoid table; not a PCM-Net '
                             'checkpoint this converter knows')
    known = set(names) | set(vocab) | {'token_embed.embeddings_pos.pe'}
    left = sorted(k for k in official if k not in known)
    if left:
        raise ValueError(f'{len(left)} official tensors map nowhere (e.g. '
                         f'{left[:3]}); not a PCM-Net (X-modaler '
                         'GTransformer/TransformerDecoder) checkpoint')
    return state


def official_dimensions(state: Dict[str, torch.Tensor]) -> Dict[str, int]:
    """The config values a converted state dict was trained with, by their
    config key (``'model.mixup.global_dim'``, ...)."""
    embed_dim, patch_dim = state['mixup.patch_proj.weight'].shape
    global_dim = state['mixup.global_proj.weight'].shape[1]
    dims = {'model.mixup.embed_dim': embed_dim,
            'model.mixup.patch_dim': patch_dim,
            'model.mixup.global_dim': global_dim,
            'model.mixup.num_patches': state['mixup.pos_embed'].shape[1] - 1}
    for part in ('encoder', 'decoder'):
        dims.update({
            f'model.{part}.embed_dim': embed_dim,
            f'model.{part}.num_layers': _layer_count(state, f'{part}.layers.'),
            f'model.{part}.ffn_dim':
                state[f'{part}.layers.0.ffn.net.0.weight'].shape[0]})
    return dims


def check_config_fits(cfg, config: str, dims: Dict[str, int],
                      checkpoint: str) -> None:
    """Raise naming ``config`` and every dimension it sets otherwise than
    the checkpoint (before the model is built: a wrong CLIP width would
    otherwise surface as a concept bank that does not fit)."""
    wrong = []
    for key, value in dims.items():
        node = cfg
        for part in key.split('.'):
            node = node.get(part) if hasattr(node, 'get') else None
        if node is not None and node != value:
            wrong.append(f'{key} is {node} in the config, {value} in the '
                         'checkpoint')
    if wrong:
        raise ValueError(
            f'config {config} does not fit checkpoint {checkpoint}: '
            f'{"; ".join(wrong)}. Pass the config of its architecture '
            '(e.g. configs/pcm_coco_vitl14.py for a ViT-L/14 checkpoint)')


def convert_official_checkpoint(checkpoint: str, vocabulary: str,
                                concept_bank: str, out: str, *,
                                config: str, name: Optional[str] = None
                                ) -> dict:
    """Write an official checkpoint as a release (folder or one file).

    Args:
        checkpoint (str): The official ``.pth`` (loaded without executing
            code unless trusted).
        vocabulary (str): Its ``vocabulary.txt``.
        concept_bank (str): Its concept bank: this plugin's ``.npz`` or the
            official ``.pickle``.
        out (str): Release folder, or ``.safetensors`` for one file.
        config (str): The architecture, e.g. ``configs/pcm_coco.py``.
        name (str, optional): The release's name.

    Returns:
        dict: The release manifest.
    """
    raw = load_local_checkpoint(checkpoint, map_location='cpu')
    official = raw.get('model', raw) if isinstance(raw, dict) else raw
    state = convert_official_state(official)
    words = read_official_vocabulary(vocabulary)
    rows = state['decoder.word_embed.weight'].shape[0] - 2
    if len(words) + 1 != rows:
        raise ValueError(f'{vocabulary} has {len(words)} words but '
                         f'{checkpoint} has {rows} vocabulary rows (words '
                         '+ 1): they are not from the same release')
    dims = official_dimensions(state)
    cfg = read_config(config)
    check_config_fits(cfg, config, dims, checkpoint)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = osp.join(tmp, 'tokenizer.json')
        save_tokenizer(tokenizer_from_official_words(words), tokenizer)
        bank = concept_bank
        if concept_bank.endswith(('.pickle', '.pkl')):
            bank = osp.join(tmp, 'concept_bank.npz')
            save_concept_bank(bank, *read_official_bank(concept_bank))
        bank_dim = load_concept_bank(bank)[1].shape[1]
        if bank_dim != dims['model.mixup.global_dim']:
            raise ValueError(
                f'concept bank {concept_bank} is {bank_dim}-d but checkpoint '
                f'{checkpoint} takes {dims["model.mixup.global_dim"]}-d CLIP '
                'embeddings: use the bank of its CLIP (ViT-B/32 512, '
                'ViT-L/14 768)')
        cfg.merge_from_dict({'model.tokenizer': tokenizer,
                             'model.mixup.concept_bank': bank,
                             'model.mixup.clip_head': FROM_WEIGHTS,
                             # Not official words: the loss is over the
                             # official rows only (softmax, smoothing).
                             'model.loss.excluded_ids': [UNK_ID, PAD_ID]})
        model = MODELS.build(cfg.model)
        model.load_state_dict(state, strict=True)
        manifest = dict(
            name=name or osp.splitext(osp.basename(osp.normpath(out)))[0],
            source=dict(official_checkpoint=checkpoint,
                        vocabulary=vocabulary, concept_bank=concept_bank,
                        config=config, iteration=raw.get('iteration')
                        if isinstance(raw, dict) else None),
            clip_model=dict(cfg.get('clip_model') or {}), metrics={})
        os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
        return write_release(cfg, model.eval(), out, manifest)
