"""CLIPScore / RefCLIPScore: the formula by hand, the metric's plumbing."""
import math

import pytest
import torch
from mmpretrain.structures import DataSample

from pcm_plugin.evaluation import CLIPScoreMetric, clip_score, ref_clip_score


def test_clip_score_by_hand():
    image = torch.tensor([[1.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    text = torch.tensor([[0.6, 0.8], [-1.0, 0.1], [3.0, 4.0]])
    got = clip_score(image, text)
    torch.testing.assert_close(got, torch.tensor([1.5, 0.0, 1.5]))


def test_ref_clip_score_is_the_harmonic_mean_with_the_best_reference():
    text = torch.tensor([[0.6, 0.8], [0.6, 0.8]])
    clip_s = torch.tensor([1.5, 0.0])
    refs = [torch.tensor([[0.0, 1.0], [1.0, 0.0]]),  # cos 0.8 and 0.6
            torch.tensor([[0.0, 1.0]])]
    got = ref_clip_score(clip_s, text, refs)
    expected = 2 * 1.5 * 0.8 / (1.5 + 0.8)
    torch.testing.assert_close(got, torch.tensor([expected, 0.0]))
    # All references opposite: the reference term is 0, so is the mean.
    got = ref_clip_score(torch.tensor([1.0]), text[:1],
                         [torch.tensor([[-0.6, -0.8]])])
    assert got.item() == 0.0


@pytest.fixture(scope='module')
def metric_parts(tiny_clip, tmp_path_factory):
    import os.path as osp

    from pcm_plugin.evaluation.coco_gt import write_coco_gt
    name, ckpt = tiny_clip
    config = osp.join(osp.dirname(ckpt), f'{name}.json')
    gt = str(tmp_path_factory.mktemp('gt') / 'gt.json')
    write_coco_gt({1: ['a red circle', 'a blue square'],
                   2: ['two green triangles']}, gt)
    return dict(clip_model=name, clip_checkpoint=ckpt, model_config=config,
                ann_file=gt)


def test_metric_scores_what_it_is_given(metric_parts):
    """Image embeddings made from the captions' own text embeddings: the
    CLIP-S of a caption against 'its' image is exactly 2.5 (250 as
    reported, ×100 like the caption metrics), and its RefCLIP-S follows
    from the reference cosines computed here."""
    metric = CLIPScoreMetric(**metric_parts)
    captions = ['a red circle', 'two green triangles']
    image = metric.embed_texts(captions)  # (2, D): cos 1 with themselves
    samples = []
    for i, caption in enumerate(captions):
        sample = DataSample(metainfo=dict(image_id=str(i + 1)))
        sample.pred_caption = caption
        samples.append(sample)
    metric.process(dict(inputs=dict(global_feat=image)), samples)
    # The same image again (another rank's copy) counts once.
    metric.process(dict(inputs=dict(global_feat=image[:1])), samples[:1])
    scores = metric.evaluate(2)
    assert scores['CLIPScore'] == pytest.approx(250, abs=1e-3)
    # Image 1's best reference is its own caption (cos 1): HM(2.5, 1);
    # image 2's only reference is its caption too.
    assert scores['RefCLIPScore'] == pytest.approx(100 * 2 * 2.5 / 3.5,
                                                   abs=1e-3)
    # scale=1: the official code's numbers, the same scores / 100.
    metric = CLIPScoreMetric(**metric_parts, scale=1)
    metric.process(dict(inputs=dict(global_feat=image)), samples)
    raw = metric.evaluate(2)
    assert raw == pytest.approx({k: v / 100 for k, v in scores.items()},
                                rel=1e-12)


def test_bad_input_features_of_another_clip(metric_parts):
    metric = CLIPScoreMetric(**dict(metric_parts, ann_file=None))
    sample = DataSample(metainfo=dict(image_id='1'))
    sample.pred_caption = 'a dog'
    metric.process(dict(inputs=dict(global_feat=torch.ones(1, 7))), [sample])
    with pytest.raises(ValueError, match='7-d.*use the CLIP that extracted'):
        metric.evaluate(1)


def test_clip_score_range():
    torch.manual_seed(0)
    got = clip_score(torch.randn(50, 8), torch.randn(50, 8))
    assert got.min() >= 0 and got.max() <= 2.5
    assert math.isclose(clip_score(torch.ones(1, 3), torch.ones(1, 3),
                                   weight=1.0).item(), 1.0, rel_tol=1e-6)


@pytest.mark.real_data
def test_metric_on_real_photos_and_their_human_captions(metric_parts,
                                                        shared_data):
    """Real Flickr8k photos through the extraction code, real captions:
    the metric equals the formula computed here from the same towers."""
    import csv
    import os.path as osp

    from PIL import Image

    from pcm_plugin.clip.clip_features import (
        extract_batch,
        load_open_clip,
    )
    folder = osp.join(shared_data, 'flickr8k', 'images_full')
    with open(osp.join(shared_data, 'flickr8k', 'captions.txt')) as f:
        rows = list(csv.reader(f))[1:]
    names = sorted({r[0] for r in rows
                    if osp.isfile(osp.join(folder, r[0]))})[:6]
    caps = {n: [r[1] for r in rows if r[0] == n] for n in names}
    clip, preprocess, _ = load_open_clip(
        metric_parts['clip_model'],
        checkpoint=metric_parts['clip_checkpoint'],
        model_config=metric_parts['model_config'])
    images = torch.stack([preprocess(Image.open(osp.join(folder, n))
                                     .convert('RGB')) for n in names])
    _, global_feat = extract_batch(clip, images, pool=1)
    metric = CLIPScoreMetric(**dict(metric_parts, ann_file=None))
    samples = []
    for i, name in enumerate(names):
        sample = DataSample(metainfo=dict(image_id=str(i)))
        sample.pred_caption = caps[name][0]
        samples.append(sample)
    metric.process(dict(inputs=dict(global_feat=global_feat)), samples)
    got = metric.evaluate(len(names))['CLIPScore']
    text = metric.embed_texts([caps[n][0] for n in names])
    expected = 100 * clip_score(global_feat, text).mean().item()
    assert got == pytest.approx(expected, abs=1e-4)
    assert 0 <= got <= 250 and len(names) == 6
