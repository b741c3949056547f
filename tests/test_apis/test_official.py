"""Official PCM-Net checkpoints: every tensor lands, and the converted model
computes what the official layout computes (a re-derivation written here
from the method doc and the official module layout, in eval mode)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pcm_plugin.apis.official import (
    NEVER,
    convert_official_state,
    official_names,
    official_sinusoid,
)

D, HEADS, FFN, DV, DG, N, LAYERS = 16, 2, 32, 24, 12, 4, 2
WORDS = ['a', 'dog', 'on', 'the', 'grass', 'red']  # official ids 1..6
V = len(WORDS) + 1  # id 0 is '.'


def official_state(seed=0):
    """Exactly the official names, with these test dimensions."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.3):
        return torch.randn(*shape, generator=g) * scale

    def linear(name, fan_in, fan_out):
        return {f'{name}.weight': r(fan_out, fan_in),
                f'{name}.bias': r(fan_out, scale=0.05)}

    def norm(name, dim):
        return {f'{name}.weight': 1 + r(dim, scale=0.1),
                f'{name}.bias': r(dim, scale=0.1)}

    s = {'token_embed.embeddings.weight': r(V, D),
         'token_embed.embeddings_pos.pe': official_sinusoid(5000, D)[None],
         'visual_embed.embeddings_pos': r(1, N + 1, D, scale=0.02),
         'visual_embed.embeddings_token_type.weight': r(2, D),
         'visual_embed.proj': r(DV, DG)}
    s.update(norm('token_embed.embeddings_norm', D))
    s.update(linear('visual_embed.embeddings', DV, D))
    s.update(linear('visual_embed.g_embeddings', DG, D))
    s.update(linear('visual_embed.t_embeddings', DG, D))
    s.update(norm('visual_embed.embeddings_norm', D))
    s.update(norm('visual_embed.ln_post', DV))
    for i in range(LAYERS):
        p = f'encoder.layers.{i}'
        for part in ('query', 'key', 'value'):
            s.update(linear(f'{p}.attention.self.{part}', D, D))
        s.update(linear(f'{p}.attention.output.dense', D, D))
        s.update(norm(f'{p}.attention.output.LayerNorm', D))
        s.update(linear(f'{p}.intermediate.dense', D, FFN))
        s.update(linear(f'{p}.output.dense', FFN, D))
        s.update(norm(f'{p}.output.LayerNorm', D))
    s.update(linear('encoder.gvfeat_embed.0', D * (LAYERS + 1), D))
    s.update(norm('encoder.gvfeat_embed.1', D))
    for i in range(LAYERS):
        p = f'decoder.g_layers.{i}'
        for att in ('self_attn', 'x_att'):
            for part in ('query', 'key', 'value'):
                s.update(linear(f'{p}.{att}.self.{part}', D, D))
            s.update(linear(f'{p}.{att}.output.dense', D, D))
            s.update(norm(f'{p}.{att}.output.LayerNorm', D))
        s.update(linear(f'{p}.intermediate.dense', D, FFN))
        s.update(linear(f'{p}.output.dense', FFN, D))
        s.update(norm(f'{p}.output.LayerNorm', D))
    s.update(linear('predictor.logits', D, V))
    return s


# --- the official computation, written out (eval mode, append layout) ---

def lin(W, name, x):
    return x @ W[f'{name}.weight'].t() + W[f'{name}.bias']


def ln(W, name, x, eps):
    return F.layer_norm(x, x.shape[-1:], W[f'{name}.weight'],
                        W[f'{name}.bias'], eps)


def bert_attention(W, name, q_in, kv_in, ext_mask):
    """BertAttention/BertCrossAttention: post-LN, -10000 masks."""
    B, T, _ = q_in.shape
    dh = D // HEADS

    def heads(x):
        return x.view(B, -1, HEADS, dh).transpose(1, 2)
    q = heads(lin(W, f'{name}.self.query', q_in))
    k = heads(lin(W, f'{name}.self.key', kv_in))
    v = heads(lin(W, f'{name}.self.value', kv_in))
    scores = q @ k.transpose(-1, -2) / math.sqrt(dh) + ext_mask
    ctx = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, D)
    return ln(W, f'{name}.output.LayerNorm',
              lin(W, f'{name}.output.dense', ctx) + q_in, 1e-12)


def bert_ffn(W, name, x):
    h = F.relu(lin(W, f'{name}.intermediate.dense', x))
    return ln(W, f'{name}.output.LayerNorm',
              lin(W, f'{name}.output.dense', h) + x, 1e-12)


def unit(x):
    return x / (x.norm(dim=-1, keepdim=True) + 1e-9)


def official_forward(W, bank, patch, glob, ids, top_k=3, top_m=2,
                     temperature=0.01):
    B = patch.shape[0]
    glob = unit(glob)  # the official loader L2-normalises it (method §2.2)
    # VisualGridClipTagLREmbedding (test time: textual tokens appended).
    probs = (unit(glob) @ unit(bank).t() / temperature).softmax(-1)
    top_p, top_i = probs.topk(top_k, dim=-1)
    tag_mask = (top_p > 0.0).float()
    tags = unit(bank)[top_i] * tag_mask[..., None]  # (B, K, Dg)
    local = ln(W, 'visual_embed.ln_post', patch, 1e-5) @ \
        W['visual_embed.proj']
    sim = unit(local) @ unit(tags).transpose(1, 2)  # (B, N, K)
    v_tags = (sim / temperature).softmax(-1) @ tags  # (B, N, Dg)
    flat = ((sim * tag_mask[:, None]).view(B, -1) / temperature).softmax(-1)
    chosen = flat.topk(top_m, dim=-1).indices
    replace = torch.zeros(B, N * top_k).scatter(1, chosen, 1.0)
    replace = replace.view(B, N, top_k).sum(-1) > 0  # (B, N)
    emb = torch.cat([lin(W, 'visual_embed.embeddings', patch),
                     lin(W, 'visual_embed.t_embeddings', v_tags)], 1)
    emb = torch.cat([lin(W, 'visual_embed.g_embeddings', glob)[:, None],
                     emb], 1)
    pos = W['visual_embed.embeddings_pos']
    emb = emb + torch.cat([pos, pos[:, 1:]], 1)
    types = torch.cat([torch.zeros(B, N + 1, dtype=torch.long),
                       replace.long()], 1)
    emb = emb + W['visual_embed.embeddings_token_type.weight'][types]
    x = ln(W, 'visual_embed.embeddings_norm', F.relu(emb), 1e-5)
    visible = torch.cat([torch.ones(B, N + 1), replace.float()], 1)
    ext = ((1.0 - visible) * -10000.0)[:, None, None]  # (B, 1, 1, L)
    # GTransformerEncoder.
    firsts = [x[:, 0]]
    for i in range(LAYERS):
        x = bert_attention(W, f'encoder.layers.{i}.attention', x, x, ext)
        x = bert_ffn(W, f'encoder.layers.{i}', x)
        firsts.append(x[:, 0])
    g = ln(W, 'encoder.gvfeat_embed.1',
           lin(W, 'encoder.gvfeat_embed.0', torch.cat(firsts, -1)), 1e-5)
    memory = torch.cat([g[:, None], x[:, 1:]], 1)
    # TokenBaseEmbedding + TransformerDecoder + BasePredictor.
    T = ids.shape[1]
    t = W['token_embed.embeddings.weight'][ids] + \
        W['token_embed.embeddings_pos.pe'][:, :T]
    t = ln(W, 'token_embed.embeddings_norm', t, 1e-5)
    causal = torch.triu(torch.ones(T, T), 1)[None, None] * -10000.0
    for i in range(LAYERS):
        p = f'decoder.g_layers.{i}'
        t = bert_attention(W, f'{p}.self_attn', t, t, causal)
        t = bert_attention(W, f'{p}.x_att', t, memory, ext)
        t = bert_ffn(W, p, t)
    return lin(W, 'predictor.logits', t)  # (B, T, V)


def test_name_table_covers_every_official_tensor_once():
    W = official_state()
    names = official_names(LAYERS, LAYERS)
    state = convert_official_state(W)
    assert len(set(names.values())) == len(names)  # one-to-one
    mapped = {k for k in W if k in names}
    vocab = {'token_embed.embeddings.weight', 'predictor.logits.weight',
             'predictor.logits.bias', 'token_embed.embeddings_pos.pe'}
    assert mapped | vocab == set(W)
    assert len(state) == len(W) - 1  # every tensor but the fixed pe table


@pytest.fixture
def converted(tmp_path):
    return convert_test_checkpoint(tmp_path, WORDS)


def convert_test_checkpoint(tmp_path, words):
    """:func:`official_state` with ``words`` converted to a one-file
    release; returns the official state, the bank, the release, manifest."""
    from mmengine.config import Config

    from pcm_plugin.apis.official import convert_official_checkpoint
    from pcm_plugin.models.concept_bank import save_concept_bank
    from tests.helpers import REPO_ROOT, random_unit_rows
    W = official_state()
    ckpt = tmp_path / 'official.pth'
    torch.save(dict(model=W, iteration=1234), ckpt)
    vocab = tmp_path / 'vocabulary.txt'
    vocab.write_text('\n'.join(words) + '\n')
    bank_rows = random_unit_rows(6, DG, seed=5)
    bank = tmp_path / 'bank.npz'
    save_concept_bank(str(bank), [f'c{i}' for i in range(6)], bank_rows)
    cfg = Config.fromfile(f'{REPO_ROOT}/configs/pcm_coco.py')
    small = dict(embed_dim=D, num_layers=LAYERS, num_heads=HEADS,
                 ffn_dim=FFN)
    cfg.merge_from_dict({
        'model.mixup.patch_dim': DV, 'model.mixup.global_dim': DG,
        'model.mixup.num_patches': N, 'model.mixup.embed_dim': D,
        'model.mixup.top_k': 3, 'model.mixup.top_m': 2,
        'model.encoder': dict(cfg.model.encoder, **small),
        'model.decoder': dict(cfg.model.decoder, **small)})
    config = str(tmp_path / 'arch.py')
    cfg.dump(config)
    out = str(tmp_path / 'official.safetensors')
    manifest = convert_official_checkpoint(str(ckpt), str(vocab), str(bank),
                                           out, config=config)
    return W, torch.from_numpy(bank_rows), out, manifest


def test_converted_model_computes_the_official_forward(converted):
    from pcm_plugin.apis.inferencer import build_captioner
    W, bank, out, manifest = converted
    assert manifest['source']['iteration'] == 1234
    model, _ = build_captioner(out, None)
    torch.manual_seed(1)
    patch, glob = torch.randn(3, N, DV), torch.randn(3, DG)
    ids = torch.tensor([[0, 1, 2, 3], [0, 4, 5, 6], [0, 6, 6, 1]])
    with torch.no_grad():
        expected = official_forward(W, bank, patch, glob, ids)
        # Official id j is ours j + 2 (j >= 1).
        ours_ids = torch.where(ids > 0, ids + 2, ids)
        memory, mask = model.encode(dict(patch_feats=patch,
                                         global_feat=glob))
        got = model.decoder(ours_ids, memory, mask)  # (B, T, V + 2)
    official_cols = [0] + list(range(3, V + 2))
    torch.testing.assert_close(got[..., official_cols], expected,
                               rtol=1e-4, atol=1e-4)
    assert torch.all(got[..., 1:3] == NEVER)
    torch.testing.assert_close(
        got.log_softmax(-1)[..., official_cols], expected.log_softmax(-1),
        rtol=1e-4, atol=1e-4)
    # The words come back in the official order.
    assert model.tokenizer.convert_ids_to_tokens([3, 4, 8]) == \
        ['a', 'dog', 'red']


def test_bad_input_vocabulary_of_another_release(tmp_path):
    from pcm_plugin.apis.official import convert_official_checkpoint
    torch.save(dict(model=official_state()), tmp_path / 'o.pth')
    (tmp_path / 'vocab.txt').write_text('a\nb\n')
    with pytest.raises(ValueError, match='2 words but .* 7 vocabulary rows'):
        convert_official_checkpoint(
            str(tmp_path / 'o.pth'), str(tmp_path / 'vocab.txt'), 'x.npz',
            str(tmp_path / 'out'), config='configs/pcm_coco.py')
    assert not (tmp_path / 'out').exists()


def test_bad_input_unknown_tensor_is_named():
    W = official_state()
    W['visual_embed.extra.weight'] = torch.zeros(2)
    with pytest.raises(ValueError, match="map nowhere.*visual_embed.extra"):
        convert_official_state(W)
    W = official_state()
    W['token_embed.embeddings_pos.pe'] = torch.zeros(1, 5000, D)
    with pytest.raises(ValueError, match='not the official sinusoid'):
        convert_official_state(W)


def test_sinusoid_is_the_decoders():
    from pcm_plugin.models.caption_decoder import sinusoid_table
    np.testing.assert_allclose(official_sinusoid(20, D).numpy(),
                               sinusoid_table(20, D).numpy(), atol=1e-6)


def test_convert_tool_writes_a_folder_release(converted, tmp_path,
                                              tool_in_process):
    import json
    W, _, one_file, manifest = converted
    source = manifest['source']
    # release.json records the files' names, not the converting
    # machine's paths.
    assert source == dict(official_checkpoint='official.pth',
                          vocabulary='vocabulary.txt', concept_bank='bank.npz',
                          config='arch.py', iteration=1234)
    out = tmp_path / 'release'
    proc = tool_in_process('tools/convert_official_checkpoint.py', [
        *(tmp_path / source[key] for key in (
            'official_checkpoint', 'vocabulary', 'concept_bank')),
        out, '--config', tmp_path / source['config']], check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = json.loads((out / 'release.json').read_text())
    assert written['name'] == 'release'
    assert written['source'] == source
    from safetensors.torch import load_file
    folder = load_file(str(out / 'model.safetensors'))
    single = load_file(one_file)
    for key, value in folder.items():
        assert torch.equal(value, single[key]), key


def official_pickle_bank(path, dim):
    """An official-format concept bank: a pickled (words, fp16 tensor)."""
    import pickle

    from tests.helpers import random_unit_rows
    rows = torch.from_numpy(random_unit_rows(6, dim, seed=5)).half()
    path.write_bytes(pickle.dumps(([f'c{i}' for i in range(6)], rows)))
    return path


def test_bad_input_wrong_config_names_the_config_and_shapes(tmp_path):
    """A config of another CLIP width, with an official .pickle bank (made
    into a temporary .npz): the error names the config and the dimensions
    that disagree, not the temporary bank; nothing is written."""
    from mmengine.config import Config

    from tests.helpers import run_tool_main
    convert_test_checkpoint(tmp_path, WORDS)  # writes arch.py that fits
    wrong = Config.fromfile(str(tmp_path / 'arch.py'))
    wrong.merge_from_dict({'model.mixup.global_dim': DG + 4})
    wrong.dump(str(tmp_path / 'wrong.py'))
    out = tmp_path / 'release'
    with pytest.raises(SystemExit) as exc:
        run_tool_main('tools/convert_official_checkpoint.py', [
            tmp_path / 'official.pth', tmp_path / 'vocabulary.txt',
            official_pickle_bank(tmp_path / 'bank.pickle', DG), out,
            '--config', tmp_path / 'wrong.py'])
    assert exc.value.code == (
        f'error: config {tmp_path}/wrong.py does not fit checkpoint '
        f'{tmp_path}/official.pth: model.mixup.global_dim is {DG + 4} in '
        f'the config, {DG} in the checkpoint. Pass the config of its '
        'architecture (e.g. configs/pcm_coco_vitl14.py for a ViT-L/14 '
        'checkpoint)')
    assert not out.exists()


def test_bad_input_bank_of_another_clip_names_the_bank(tmp_path):
    from tests.helpers import run_tool_main
    convert_test_checkpoint(tmp_path, WORDS)
    bank = official_pickle_bank(tmp_path / 'bank.pickle', DG + 4)
    out = tmp_path / 'release'
    with pytest.raises(SystemExit) as exc:
        run_tool_main('tools/convert_official_checkpoint.py', [
            tmp_path / 'official.pth', tmp_path / 'vocabulary.txt', bank,
            out, '--config', tmp_path / 'arch.py'])
    assert exc.value.code == (
        f'error: concept bank {bank} is {DG + 4}-d but checkpoint '
        f'{tmp_path}/official.pth takes {DG}-d CLIP embeddings: use the '
        'bank of its CLIP (ViT-B/32 512, ViT-L/14 768)')
    assert not out.exists()
