"""A converted official model trains on the official loss: its training
loss on caption strings equals the official PCM-Net loss on the official
word ids, in-vocabulary captions and unknown words alike.

The official loss is re-stated here from the official code's behaviour
(X-modaler ``WeightedLabelSmoothing``: a KL divergence to a smoothed target
over the V official rows, per-sample weight ``clamp(clipscore / 2.5 *
alpha, 0, 1)`` with ``clipscore = 2.5 * cos``, and the ``'batch'`` focal
factor as an n x n outer product under a masked mean), and the official
caption ids from its preprocessing (rare words become the word ``'UNK'``,
inputs start with id 0, targets end with id 0 and pad with -1).
"""
import pytest
import torch

from tests.test_apis.test_official import (
    DG,
    DV,
    WORDS,
    N,
    convert_test_checkpoint,
    official_forward,
)

# X-modaler appends its 'UNK' word last; same number of rows as WORDS.
WORDS_WITH_UNK = WORDS[:-1] + ['UNK']
IN_VOCABULARY = ['a dog on the grass', 'The dog.', 'a dog on a dog']
WITH_UNKNOWN = ['a zebra on the grass', 'the dog', 'a red dog on ice']
CLIP_COS = [0.3, 0.5, -0.1]  # weights 0.75, 1 (clamped), 0 (clamped)


def official_ids(captions, words):
    """Official input ids and targets (B, T): rare words -> 'UNK'."""
    table = {w: i + 1 for i, w in enumerate(words)}
    seqs = [[table.get(w, table.get('UNK')) for w in
             c.lower().replace('.', ' ').split()] for c in captions]
    T = max(len(s) for s in seqs) + 1
    inputs = torch.zeros(len(seqs), T, dtype=torch.long)
    targets = torch.full((len(seqs), T), -1, dtype=torch.long)
    for b, seq in enumerate(seqs):
        inputs[b, 1:len(seq) + 1] = torch.tensor(seq)
        targets[b, :len(seq)] = torch.tensor(seq)
        targets[b, len(seq)] = 0
    return inputs, targets


def official_loss(logits, targets, clipscore, *, eps=0.1, alpha=2.5,
                  gamma=2.0):
    """The official weighted label smoothing, 'batch' focal factor."""
    B, T, V = logits.shape
    weights = (clipscore / 2.5 * alpha).clamp(0.0, 1.0)
    weights = weights[:, None].expand(B, T).reshape(-1)
    log_p = logits.reshape(-1, V).log_softmax(-1)
    flat = targets.reshape(-1)
    mask = flat >= 0
    index = flat.clamp(min=0)
    q = torch.full_like(log_p, eps / (V - 1))
    q[torch.arange(len(index)), index] = 1.0 - eps
    kl = (q * (q.log() - log_p)).sum(1) * weights  # (B*T,)
    focal = (1.0 - log_p.exp()[torch.arange(len(index)), index]) ** gamma
    outer = focal[:, None] * kl[None, :]  # (B*T, B*T)
    pair_mask = mask[:, None] & mask[None, :]
    return outer[pair_mask].mean()


@pytest.fixture
def release(tmp_path):
    from pcm_plugin.apis.inferencer import build_captioner
    W, bank, out, _ = convert_test_checkpoint(tmp_path, WORDS_WITH_UNK)
    model, _ = build_captioner(out, None)
    return W, bank, model


def losses_of(W, bank, model, captions, words):
    """(ours, official) training loss on ``captions`` (dropout off)."""
    from mmpretrain.structures import DataSample
    torch.manual_seed(3)
    patch, glob = torch.randn(3, N, DV), torch.randn(3, DG)
    samples = []
    for caption, cos in zip(captions, CLIP_COS):
        sample = DataSample(metainfo=dict(clip_cos=cos))
        sample.gt_caption = caption
        samples.append(sample)
    with torch.no_grad():
        ours = model.loss(dict(patch_feats=patch, global_feat=glob),
                          samples)['loss_ce']
        inputs, targets = official_ids(captions, words)
        logits = official_forward(W, bank, patch, glob, inputs)
        official = official_loss(logits, targets,
                                 2.5 * torch.tensor(CLIP_COS))
    return ours.item(), official.item()


@pytest.mark.parametrize('captions', [IN_VOCABULARY, WITH_UNKNOWN],
                         ids=['in_vocabulary', 'unknown_word'])
def test_training_loss_of_a_converted_model_is_the_official_loss(
        release, captions):
    W, bank, model = release
    ours, official = losses_of(W, bank, model, captions, WORDS_WITH_UNK)
    assert ours == pytest.approx(official, abs=1e-5)
    assert model.loss_module.excluded_ids == (1, 2)


def test_unknown_word_is_the_official_unk_row(release):
    *_, model = release
    from pcm_plugin.models.tokenizer import encode_captions
    _, targets, _ = encode_captions(model.tokenizer, ['a zebra UNK'])
    assert targets[0, :3].tolist() == [3, 8, 8]  # official 1, 6, 6 + 2


def test_bad_input_unknown_word_without_official_unk_is_named(tmp_path):
    """A vocabulary without 'UNK' cannot score a caption with an unknown
    word (the official code could not either): one clear error."""
    from pcm_plugin.apis.inferencer import build_captioner
    W, bank, out, _ = convert_test_checkpoint(tmp_path, WORDS)
    model, _ = build_captioner(out, None)
    ours, official = losses_of(W, bank, model, IN_VOCABULARY, WORDS)
    assert ours == pytest.approx(official, abs=1e-5)
    with pytest.raises(ValueError, match=r"ids \[1\].*'UNK' word"):
        losses_of(W, bank, model, WITH_UNKNOWN, WORDS)


@pytest.mark.parametrize('name', ['pcm-net_vit-b32_coco',
                                  'pcm-net_vit-b32_flickr30k',
                                  'pcm-net_vit-l14_coco',
                                  'pcm-net_vit-l14_flickr30k'])
def test_zoo_models_of_converted_weights_train_on_the_official_loss(name):
    """The zoo configs load converted official weights (official vocabulary
    + [UNK]/[PAD]): their loss leaves the two rows out, as the release's."""
    from mmengine.config import Config

    from pcm_plugin.registry import MODELS
    from tests.helpers import REPO_ROOT
    cfg = Config.fromfile(f'{REPO_ROOT}/configs/zoo/{name}.py')
    assert MODELS.build(cfg.model.loss).excluded_ids == (1, 2)
